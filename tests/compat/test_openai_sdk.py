"""The official OpenAI SDK against Keel's `/v1/chat/completions`, served by an
OpenAI target (passed through) and by an Anthropic target (translated)."""

from __future__ import annotations

import json

import openai
import pytest

from conftest import (
    APP_KEY,
    answer_model,
    anthropic_tool_turns,
    assert_provider_key,
    openai_tool_turns,
)

SYSTEM = "You are a build assistant."

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Read a file of the repository.",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string"}},
                "required": ["path"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "run_command",
            "description": "Run a shell command.",
            "parameters": {
                "type": "object",
                "properties": {
                    "command": {"type": "string"},
                    "timeout_secs": {"type": "integer"},
                },
                "required": ["command"],
            },
        },
    },
]


@pytest.fixture
def messages(request) -> list[dict]:
    # Each test opens its own conversation: Keel recognises a conversation by
    # its opening, and tests must not share one (nor its turn count).
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"Why does cargo build fail? ({request.node.name})"},
    ]


def test_plain_completion(openai_client, target, seen, messages):
    log = seen(target["fake"])
    raw = openai_client.chat.completions.with_raw_response.create(
        model=target["model"], messages=messages, max_tokens=256, temperature=0.2
    )
    assert raw.headers["x-keel-model"] == target["model"]
    assert raw.headers["x-keel-provider"] == target["provider"]
    completion = raw.parse()

    assert completion.object == "chat.completion"
    assert completion.model == answer_model(target, "openai")
    [choice] = completion.choices
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert "serde_json" in choice.message.content
    assert choice.message.tool_calls is None
    assert completion.usage.prompt_tokens > 0
    assert completion.usage.completion_tokens > 0
    assert (
        completion.usage.total_tokens
        == completion.usage.prompt_tokens + completion.usage.completion_tokens
    )

    details = completion.usage.prompt_tokens_details
    if target["api"] == "anthropic":
        # message.json: input 52, cache read 1788, cache creation 0, output 44.
        assert completion.usage.prompt_tokens == 52 + 1788
        assert details.cached_tokens == 1788
        assert completion.usage.completion_tokens == 44
    else:
        assert details.cached_tokens == 1536

    [req] = log.new()
    assert_provider_key(req, target["fake"])
    body = req["body"]
    assert body["model"] == target["model"] + "-up"
    if req["path"] == "/v1/messages":
        # Translated: the system message is Anthropic's top-level `system`.
        assert body["max_tokens"] == 256
        assert body["temperature"] == 0.2
        assert SYSTEM in json.dumps(body["system"])
        assert [m["role"] for m in body["messages"]] == ["user"]
    else:
        assert body["messages"] == messages


def test_streaming_without_usage(openai_client, target, seen, messages):
    log = seen(target["fake"])
    stream = openai_client.chat.completions.create(
        model=target["model"], messages=messages, stream=True
    )
    text, finish, usage_chunks, chunks = "", None, 0, 0
    for chunk in stream:
        chunks += 1
        assert chunk.object == "chat.completion.chunk"
        assert chunk.model == answer_model(target, "openai")
        if chunk.usage is not None:
            usage_chunks += 1
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    assert chunks > 2, "streamed chunk by chunk"
    assert "serde_json" in text
    assert finish == "stop"
    assert usage_chunks == 0, "usage only when the app asks for it"
    [req] = log.new()
    assert_provider_key(req, target["fake"])
    assert req["body"]["stream"] is True
    if req["path"] == "/v1/messages":
        # No max_tokens from the app: Keel fills Anthropic's required field,
        # and nothing OpenAI-only leaks into the Anthropic request.
        assert req["body"]["max_tokens"] == 4096
        assert "stream_options" not in req["body"]


def test_streaming_with_usage(openai_client, target, messages):
    stream = openai_client.chat.completions.create(
        model=target["model"],
        messages=messages,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.delta.content or "" for ch in chunks for c in ch.choices)
    assert "serde_json" in text
    finishes = [c.finish_reason for ch in chunks for c in ch.choices if c.finish_reason]
    assert finishes == ["stop"]
    with_usage = [ch for ch in chunks if ch.usage is not None]
    assert len(with_usage) == 1, "exactly one usage chunk"
    last = chunks[-1]
    assert last is with_usage[0], "usage comes last"
    assert last.choices == []
    assert last.usage.prompt_tokens > 0
    assert last.usage.completion_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens


def test_streamed_tool_calls(openai_client, target, messages):
    stream = openai_client.chat.completions.create(
        model=target["model"],
        messages=messages,
        tools=TOOLS,
        stream=True,
    )
    calls: dict[int, dict] = {}
    finish = None
    for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for tc in choice.delta.tool_calls or []:
                if tc.index not in calls:
                    # The first delta of a call carries its id and name.
                    assert tc.id and tc.function.name, tc
                    calls[tc.index] = {"id": tc.id, "name": tc.function.name, "arguments": ""}
                else:
                    assert not tc.id, "id only in the first delta"
                    assert not (tc.function and tc.function.name), "name only in the first delta"
                calls[tc.index]["arguments"] += (tc.function and tc.function.arguments) or ""
    assert finish == "tool_calls"
    assert [c["name"] for c in calls.values()] == ["read_file", "run_command"]
    assert len({c["id"] for c in calls.values()}) == 2
    args = [json.loads(c["arguments"]) for c in calls.values()]
    assert args[0] == {"path": "src/main.rs"}
    assert args[1]["command"] == "cargo build"


def test_tool_call_round_trip(openai_client, target, seen, messages):
    log = seen(target["fake"])
    history = list(messages)
    first = openai_client.chat.completions.create(
        model=target["model"], messages=history, tools=TOOLS, tool_choice="auto"
    )
    [choice] = first.choices
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert [c.function.name for c in calls] == ["read_file", "run_command"]
    assert all(c.id and c.type == "function" for c in calls)
    assert json.loads(calls[0].function.arguments) == {"path": "src/main.rs"}

    # The app answers each call by its id, as an OpenAI agent loop does.
    history.append(choice.message.model_dump(exclude_none=True))
    results = {"read_file": "fn main() { serde_json::json!({}); }", "run_command": "error[E0433]"}
    for c in calls:
        history.append({"role": "tool", "tool_call_id": c.id, "content": results[c.function.name]})
    final = openai_client.chat.completions.create(
        model=target["model"], messages=history, tools=TOOLS
    )
    [choice] = final.choices
    assert choice.finish_reason == "stop"
    assert "serde_json" in choice.message.content
    assert not choice.message.tool_calls

    # The provider saw the ids the app was given, in its own API's shape.
    reqs = log.new()
    assert len(reqs) == 2
    for r in reqs:
        assert_provider_key(r, target["fake"])
    ids = [c.id for c in calls]
    sent = reqs[1]["body"]
    if reqs[1]["path"] == "/v1/messages":
        assert sent["tools"][0]["name"] == "read_file"
        assert sent["tools"][0]["input_schema"]["required"] == ["path"]
        assert anthropic_tool_turns(sent["messages"]) == [(ids, ids)]
    else:
        assert openai_tool_turns(sent["messages"]) == [(ids, ids)]


# A 1x1 transparent PNG.
PNG_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)


def test_image_data_url(openai_client, target, seen):
    log = seen(target["fake"])
    completion = openai_client.chat.completions.create(
        model=target["model"],
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this screenshot?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": f"data:image/png;base64,{PNG_B64}"},
                    },
                ],
            }
        ],
    )
    assert completion.choices[0].finish_reason == "stop"
    [req] = log.new()
    [user] = req["body"]["messages"]
    if req["path"] == "/v1/messages":
        text, image = user["content"]
        assert text == {"type": "text", "text": "What is in this screenshot?"}
        assert image["type"] == "image"
        assert image["source"] == {"type": "base64", "media_type": "image/png", "data": PNG_B64}
    else:
        assert user["content"][1]["image_url"]["url"].endswith(PNG_B64)


def test_models_list_in_openai_shape(openai_client):
    models = list(openai_client.models.list())
    assert {"gpt-compat", "claude-compat"} <= {m.id for m in models}
    assert all(m.object == "model" for m in models)
    assert {m.owned_by for m in models if m.id == "claude-compat"} == {"ant"}


def test_app_key_is_checked(openai_client, messages):
    bad = openai_client.with_options(api_key="not-" + APP_KEY)
    try:
        bad.chat.completions.create(model="gpt-compat", messages=messages)
    except openai.AuthenticationError as e:
        assert e.status_code == 401
    else:
        raise AssertionError("a wrong app key must be refused")


# Loop detection runs on conversations; an agent without ids is recognised by
# its opening under the session-locked AGENT profile.
AGENT = {"X-Router-Profile": "AGENT"}

COMPILE_ERROR = 'error: could not compile `app` (bin "app") due to 1 previous error'


def test_agent_loop_stuck_on_a_failing_tool_stays_valid_when_nudged(
    openai_client, target, seen, messages
):
    """An agent that keeps running the same failing commands gets Keel's
    nudge; whatever Keel injects, the provider must still get a request its
    API accepts (tool results right after their tool calls)."""
    log = seen(target["fake"])
    history = list(messages)
    nudged_at = None
    for cycle in range(6):
        # The model asks for the same two tools every time...
        first = openai_client.chat.completions.create(
            model=target["model"], messages=history, tools=TOOLS,
            extra_headers=AGENT
        )
        calls = first.choices[0].message.tool_calls
        history.append(first.choices[0].message.model_dump(exclude_none=True))
        # ...and both fail the same way every time.
        for c in calls:
            history.append({"role": "tool", "tool_call_id": c.id, "content": COMPILE_ERROR})
        raw = openai_client.chat.completions.with_raw_response.create(
            model=target["model"], messages=history, tools=TOOLS,
            extra_headers=AGENT
        )
        history.append({"role": "assistant", "content": raw.parse().choices[0].message.content})
        history.append({"role": "user", "content": "Try again."})
        if raw.headers.get("x-keel-nudged") == "true":
            nudged_at = cycle
            break
    assert nudged_at is not None, "a loop of identical failures is nudged"

    for req in log.new():
        body = req["body"]
        if req["path"] == "/v1/messages":
            turns = anthropic_tool_turns(body["messages"])
        else:
            turns = openai_tool_turns(body["messages"])
        assert all(calls == answered for calls, answered in turns), turns
    # The nudged request carried a system text the app never wrote.
    nudged = log.new()[-1]["body"]
    if "system" in nudged:
        system_texts = [b["text"] for b in nudged["system"]]
    else:
        system_texts = [m["content"] for m in nudged["messages"] if m["role"] == "system"]
    assert [t for t in system_texts if t != SYSTEM], system_texts
