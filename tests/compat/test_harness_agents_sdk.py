"""The OpenAI Agents SDK (openai-agents, pinned in requirements.txt) through
Keel with chat completions and a function tool, to a scripted provider of
each format (OpenAI as is, Anthropic by translation). The SDK sends no
conversation id, so Keel tells the conversation by its opening and history:
each run of the task is its own conversation (turns 1, 2, 3 again), whole
and streamed runs complete with their tool calls, and the main line stays on
the strong model.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
from agents import (
    Agent,
    OpenAIChatCompletionsModel,
    Runner,
    function_tool,
    set_tracing_disabled,
)
from openai import AsyncOpenAI, DefaultAsyncHttpxClient

import harness_gateway as hg

set_tracing_disabled(True)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    gw, procs = hg.start(tmp_path_factory.mktemp("agents-sdk"))
    try:
        yield gw
    finally:
        for p in reversed(procs):
            p.stop()


def run_task(gw: hg.Gateway, profile: str, cwd: Path, stream: bool) -> tuple[str, list[dict]]:
    """One run of the task; returns the final output and Keel's headers of
    each response."""
    seen: list[dict] = []

    async def keel_headers(response) -> None:
        assert response.status_code == 200, response.status_code
        seen.append({k: v for k, v in response.headers.items() if k.startswith("x-keel-")})

    @function_tool
    def run_command(command: str) -> str:
        """Runs a shell command in the task's directory and returns its output."""
        done = subprocess.run(command, shell=True, cwd=cwd, capture_output=True, text=True, timeout=30)
        return done.stdout + done.stderr

    async def main() -> str:
        async with DefaultAsyncHttpxClient(event_hooks={"response": [keel_headers]}, timeout=60) as http:
            client = AsyncOpenAI(
                base_url=gw.url + "/v1",
                api_key=hg.APP_KEY,
                default_headers={"X-Router-Profile": profile},
                http_client=http,
                max_retries=0,
            )
            agent = Agent(
                name="builder",
                instructions="You are a careful build agent. Use the shell.",
                # The SDK's own default model family: resolved by `gpt-5*`.
                model=OpenAIChatCompletionsModel(model="gpt-5.1", openai_client=client),
                tools=[run_command],
            )
            if stream:
                result = Runner.run_streamed(agent, hg.TASK)
                async for _ in result.stream_events():
                    pass
            else:
                result = await Runner.run(agent, hg.TASK)
            return str(result.final_output)

    return asyncio.run(main()), seen


@pytest.mark.parametrize("profile", ["OAI", "ANT"])
def test_each_run_is_its_own_conversation(gateway: hg.Gateway, tmp_path: Path, profile: str):
    strong = f"{profile.lower()}-strong"
    for i, stream in enumerate([False, True]):
        work = tmp_path / f"run{i}"
        work.mkdir()
        output, headers = run_task(gateway, profile, work, stream)
        assert output.strip() == hg.DONE
        assert (work / hg.PROOF_FILE).read_text().strip() == hg.PROOF_TEXT
        # Three main-line turns of a new conversation, pinned at the floor.
        assert [h["x-keel-turn"] for h in headers] == ["1", "2", "3"], headers
        assert [h["x-keel-decision-kind"] for h in headers] == ["initialize", "retain", "retain"]
        assert all(h["x-keel-model"] == strong for h in headers)
        assert all(h["x-keel-session-source"] == "fingerprint" for h in headers)
