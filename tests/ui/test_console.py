"""The console in chromium: a conversation made by real traffic through the
sidecar is listed, its page shows its turns and model, and the nudge Keel
gave a looping agent appears on its turn. With KEEL_SCREENSHOTS=DIR, each
page is also saved there as a PNG (the README's screenshots)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from playwright.sync_api import expect

CONVERSATION = "ui-looping-agent"
MODEL = "gpt-compat"
AGENT = {"X-Router-Profile": "AGENT", "X-Conversation-ID": CONVERSATION}
COMPILE_ERROR = 'error: could not compile `app` (bin "app") due to 1 previous error'
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "run_command",
            "description": "Run a shell command.",
            "parameters": {
                "type": "object",
                "properties": {"command": {"type": "string"}},
                "required": ["command"],
            },
        },
    }
]


def loop_until_nudged(client) -> None:
    """An agent that runs the same failing command over and over."""
    history = [
        {"role": "system", "content": "You are a build assistant."},
        {"role": "user", "content": "Make the build pass."},
    ]
    for _ in range(8):
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=history, tools=TOOLS, extra_headers=AGENT
        )
        answer = raw.parse().choices[0].message
        history.append(answer.model_dump(exclude_none=True))
        for c in answer.tool_calls or []:
            history.append({"role": "tool", "tool_call_id": c.id, "content": COMPILE_ERROR})
        if not answer.tool_calls:
            history.append({"role": "user", "content": "Try again."})
        if raw.headers.get("x-keel-nudged") == "true":
            return
    raise AssertionError("a loop of identical failures is nudged")


def shoot(page, name: str) -> None:
    out = os.environ.get("KEEL_SCREENSHOTS")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(out) / f"console-{name}.png"), full_page=True)


def test_a_looping_conversation_is_listed_with_its_turns_model_and_nudge(keel, openai_client, page):
    loop_until_nudged(openai_client)
    ui = f"http://{keel.cp.addr('http')}/ui"

    # Log in as a person would; the cookie carries the token from then on.
    page.goto(f"{ui}/login")
    page.fill("input[name=token]", "operator-token")
    page.click("button[type=submit]")
    page.wait_for_url(f"{ui}/")

    # Sessions reach the index when written behind (within 250 ms): reload
    # until the row is there.
    row = page.locator("#conversations tbody tr", has_text=CONVERSATION)
    deadline = time.monotonic() + 15
    while row.count() == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
        page.reload()
    expect(row).to_have_count(1)
    expect(row).to_contain_text(MODEL)
    expect(row).to_contain_text("AGENT")
    shoot(page, "conversations")

    # The nudged filter keeps it.
    page.check("input[name=nudged]")
    page.click("form.filters button[type=submit]")
    expect(page.locator("#conversations tbody tr", has_text=CONVERSATION)).to_have_count(1)

    page.click(f"#conversations a:text-is('{CONVERSATION}')")
    expect(page.locator("#conversation-id")).to_have_text(CONVERSATION)
    expect(page.locator("#pinned-model")).to_have_text(MODEL)
    turns = page.locator("#timeline tbody tr")
    assert turns.count() >= 3, turns.count()
    expect(turns.first.locator("td.model")).to_have_text(MODEL)
    nudged = page.locator("#timeline tbody tr.nudged")
    expect(nudged).to_have_count(1)
    expect(nudged.locator("td.nudges")).to_contain_text("_")  # a pattern name
    assert int(nudged.get_attribute("data-turn")) > 1
    shoot(page, "conversation")

    page.click("nav a:text-is('Models & providers')")
    expect(page.locator("#deployments tbody tr", has_text=MODEL)).to_contain_text("closed")
    shoot(page, "health")

    page.click("nav a:text-is('Spend')")
    expect(page.locator("table.spend[data-by=model]")).to_contain_text(MODEL)
    shoot(page, "spend")
