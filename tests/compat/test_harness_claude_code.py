"""Claude Code (the real CLI, installed by scripts/setup-claude-code.sh)
through Keel to a scripted provider of each format: Anthropic as is, OpenAI
by translation. A two-step shell task runs to its end with streaming and
tool calls intact; the main line is pinned at the floor and counts its
turns; a resumed session on the small model is side calls that leave the pin
and the turn count alone; a rerun is its own conversation.

Skipped unless KEEL_CLAUDE_BIN names the `claude` executable
(scripts/test-compat.sh sets it).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

import harness_gateway as hg

CLAUDE = os.environ.get("KEEL_CLAUDE_BIN", "")
RUN_TIMEOUT_S = 180

pytestmark = pytest.mark.skipif(not CLAUDE, reason="KEEL_CLAUDE_BIN is not set")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    gw, procs = hg.start(tmp_path_factory.mktemp("claude-code"))
    try:
        yield gw
    finally:
        for p in reversed(procs):
            p.stop()


def claude(gw: hg.Gateway, cwd: Path, profile: str, small: str, *args: str) -> dict:
    """Runs `claude -p ... --output-format json` against the sidecar."""
    home = cwd.parent / f"{cwd.name}-home"
    home.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": gw.url,
        "ANTHROPIC_API_KEY": hg.APP_KEY,
        "ANTHROPIC_CUSTOM_HEADERS": f"X-Router-Profile: {profile}",
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": small,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "NO_COLOR": "1",
    }
    # No ANTHROPIC_MODEL: Claude Code sends its own default model name,
    # which the `claude-*` alias resolves.
    result = subprocess.run(
        [CLAUDE, "-p", *args, "--output-format", "json", "--allowedTools", "Bash"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, f"claude failed:\n{result.stdout}\n{result.stderr}"
    out = json.loads(result.stdout)
    assert not out.get("is_error"), out
    return out


@pytest.mark.parametrize("profile", ["ANT", "OAI"])
def test_claude_code_task_on_a_pinned_main_line(gateway: hg.Gateway, tmp_path: Path, profile: str):
    prefix = profile.lower()
    seen_before = len(gateway.fake.requests())
    work = tmp_path / "work"
    work.mkdir()

    run = claude(gateway, work, profile, f"{prefix}-small", hg.TASK)
    assert run["result"].strip() == hg.DONE
    assert (work / hg.PROOF_FILE).read_text().strip() == hg.PROOF_TEXT
    session = run["session_id"]
    c = gateway.conversation(session)
    assert c.pinned_model == f"{prefix}-strong"
    assert c.turns == 3, gateway.kinds(session)
    assert gateway.kinds(session) == ["initialize", "retain", "retain"]

    # What reached the provider: streamed, tools declared, every main-line
    # request on the strong model; Anthropic's request shape kept for the
    # Anthropic target and translated for the OpenAI one.
    sent = gateway.fake.requests()[seen_before:]
    assert len(sent) == 3
    for r in sent:
        assert r["body"]["stream"] is True
        assert r["body"]["model"] == f"{prefix}-strong-up"
        if profile == "ANT":
            assert r["path"] == "/v1/messages" and r["query"] == "beta=true"
            assert "anthropic-beta" in r["headers"]
        else:
            assert r["path"] == "/v1/chat/completions" and r["query"] is None
            assert any(t["function"]["name"] == "Bash" for t in r["body"]["tools"])

    # The same session resumed on the small model: side calls, served by
    # the small model; the pin and the turn count stay.
    resumed = claude(gateway, work, profile, f"{prefix}-small",
                     "--resume", session, "--model", f"{prefix}-small", "And now?")
    assert resumed["session_id"] == session
    c = gateway.conversation(session)
    assert c.pinned_model == f"{prefix}-strong"
    assert c.turns == 3
    kinds = gateway.kinds(session)
    # The timeline orders by turn: side calls (turn 0) come first.
    assert [k for k in kinds if k != "side"] == ["initialize", "retain", "retain"], kinds
    assert kinds.count("side") >= 1, kinds
    assert all(
        r["body"]["model"] == f"{prefix}-small-up"
        for r in gateway.fake.requests()[seen_before + 3:]
    )


def test_a_rerun_is_its_own_conversation(gateway: hg.Gateway, tmp_path: Path):
    sessions = []
    for i in range(2):
        work = tmp_path / f"run{i}"
        work.mkdir()
        run = claude(gateway, work, "ANT", "ant-small", hg.TASK)
        assert run["result"].strip() == hg.DONE
        sessions.append(run["session_id"])
    assert sessions[0] != sessions[1]
    for s in sessions:
        assert gateway.conversation(s).turns == 3
