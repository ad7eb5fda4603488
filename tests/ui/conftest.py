"""The console's browser test reuses the compatibility suite's harness (the
real control plane, sidecar and fake providers on ephemeral ports) and adds
a headless chromium: Debian's, driven by Playwright, never a browser build
Playwright downloads."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

_spec = importlib.util.spec_from_file_location(
    "keel_compat_harness", Path(__file__).resolve().parents[1] / "compat" / "conftest.py"
)
harness = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = harness
assert _spec.loader is not None
_spec.loader.exec_module(harness)

# The harness's fixtures, under their names.
keel = harness.keel
openai_client = harness.openai_client
pytest_runtest_makereport = harness.pytest_runtest_makereport

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        yield context.new_page()
    finally:
        context.close()
