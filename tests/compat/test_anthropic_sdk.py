"""The official Anthropic SDK against Keel's `/v1/messages`, served by an
Anthropic target (passed through) and by an OpenAI target (translated)."""

from __future__ import annotations

import json

import anthropic
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
        "name": "read_file",
        "description": "Read a file of the repository.",
        "input_schema": {
            "type": "object",
            "properties": {"path": {"type": "string"}},
            "required": ["path"],
        },
    },
    {
        "name": "run_command",
        "description": "Run a shell command.",
        "input_schema": {
            "type": "object",
            "properties": {
                "command": {"type": "string"},
                "timeout_secs": {"type": "integer"},
            },
            "required": ["command"],
        },
    },
]

@pytest.fixture
def user(request) -> list[dict]:
    # Each test opens its own conversation: Keel recognises a conversation by
    # its opening, and tests must not share one (nor its turn count).
    return [{"role": "user", "content": f"Why does cargo build fail? ({request.node.name})"}]


def test_plain_message(anthropic_client, target, seen, user):
    log = seen(target["fake"])
    raw = anthropic_client.messages.with_raw_response.create(
        model=target["model"],
        max_tokens=256,
        system=SYSTEM,
        messages=user,
        stop_sequences=["\n\nHuman:"],
    )
    assert raw.headers["x-keel-model"] == target["model"]
    assert raw.headers["x-keel-provider"] == target["provider"]
    message = raw.parse()

    assert message.type == "message"
    assert message.role == "assistant"
    assert message.model == answer_model(target, "anthropic")
    assert message.stop_reason == "end_turn"
    [block] = message.content
    assert block.type == "text"
    assert "serde_json" in block.text
    if target["api"] == "openai":
        # chat_completion.json: prompt 1843 of which 1536 cached, completion 41;
        # Anthropic counts uncached input apart from cache reads.
        assert message.usage.input_tokens == 1843 - 1536
        assert message.usage.cache_read_input_tokens == 1536
        assert message.usage.output_tokens == 41
    else:
        assert message.usage.input_tokens == 52
        assert message.usage.cache_read_input_tokens == 1788

    [req] = log.new()
    assert_provider_key(req, target["fake"])
    body = req["body"]
    assert body["model"] == target["model"] + "-up"
    if req["path"] == "/v1/chat/completions":
        # Translated: `system` is the first message, `stop_sequences` is `stop`.
        assert body["messages"][0] == {"role": "system", "content": SYSTEM}
        assert body["stop"] == ["\n\nHuman:"]
        assert 256 in (body.get("max_tokens"), body.get("max_completion_tokens"))
        assert "stop_sequences" not in body and "system" not in body
    else:
        assert body["system"] == SYSTEM
        assert body["messages"] == user


def test_stream_helper(anthropic_client, target, user):
    with anthropic_client.messages.stream(
        model=target["model"], max_tokens=256, system=SYSTEM, messages=user
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 1, "streamed piece by piece"
    text = "".join(pieces)
    assert "serde_json" in text
    assert final.stop_reason == "end_turn"
    assert final.model == answer_model(target, "anthropic")
    assert [b.type for b in final.content] == ["text"]
    assert final.content[0].text == text
    assert final.usage.input_tokens > 0
    assert final.usage.output_tokens > 0


def test_raw_stream_events_in_order(anthropic_client, target, seen, user):
    log = seen(target["fake"])
    events = list(
        anthropic_client.messages.create(
            model=target["model"], max_tokens=256, system=SYSTEM, messages=user, stream=True
        )
    )
    kinds = [e.type for e in events if e.type != "ping"]
    assert kinds[0] == "message_start"
    assert kinds[-2:] == ["message_delta", "message_stop"]
    body = kinds[1:-2]
    assert body[0] == "content_block_start" and body[-1] == "content_block_stop"
    assert set(body[1:-1]) == {"content_block_delta"}
    start = events[0]
    assert start.message.role == "assistant"
    assert start.message.model == answer_model(target, "anthropic")
    delta = next(e for e in events if e.type == "message_delta")
    assert delta.delta.stop_reason == "end_turn"
    assert delta.usage.output_tokens > 0
    [req] = log.new()
    assert_provider_key(req, target["fake"])
    if req["path"] == "/v1/chat/completions":
        # Keel asks an OpenAI target for usage so it can report it.
        assert req["body"]["stream_options"] == {"include_usage": True}


def test_streamed_tool_use(anthropic_client, target, user):
    with anthropic_client.messages.stream(
        model=target["model"], max_tokens=1024, system=SYSTEM, messages=user, tools=TOOLS
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    uses = [b for b in final.content if b.type == "tool_use"]
    assert [u.name for u in uses] == ["read_file", "run_command"]
    assert uses[0].input == {"path": "src/main.rs"}
    assert uses[1].input["command"] == "cargo build"
    assert len({u.id for u in uses}) == 2
    # Each tool_use block starts with its id and name, then only JSON deltas.
    starts = [
        e for e in events if e.type == "content_block_start" and e.content_block.type == "tool_use"
    ]
    assert [(s.content_block.id, s.content_block.name) for s in starts] == [
        (u.id, u.name) for u in uses
    ]
    for s in starts:
        deltas = [
            e for e in events if e.type == "content_block_delta" and e.index == s.index
        ]
        assert deltas and all(d.delta.type == "input_json_delta" for d in deltas)


def test_tool_use_round_trip(anthropic_client, target, seen, user):
    log = seen(target["fake"])
    history = list(user)
    first = anthropic_client.messages.create(
        model=target["model"],
        max_tokens=1024,
        system=SYSTEM,
        messages=history,
        tools=TOOLS,
        tool_choice={"type": "auto"},
    )
    assert first.stop_reason == "tool_use"
    uses = [b for b in first.content if b.type == "tool_use"]
    assert [u.name for u in uses] == ["read_file", "run_command"]
    assert uses[0].input == {"path": "src/main.rs"}

    # The app answers each tool_use by its id, as an Anthropic agent loop does.
    history.append({"role": "assistant", "content": [b.model_dump() for b in first.content]})
    results = {"read_file": "fn main() { serde_json::json!({}); }", "run_command": "error[E0433]"}
    history.append(
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": u.id, "content": results[u.name]}
                for u in uses
            ],
        }
    )
    final = anthropic_client.messages.create(
        model=target["model"], max_tokens=1024, system=SYSTEM, messages=history, tools=TOOLS
    )
    assert final.stop_reason == "end_turn"
    assert [b.type for b in final.content] == ["text"]
    assert "serde_json" in final.content[0].text

    # The provider saw the ids the app was given, in its own API's shape.
    reqs = log.new()
    assert len(reqs) == 2
    for r in reqs:
        assert_provider_key(r, target["fake"])
    ids = [u.id for u in uses]
    sent = reqs[1]["body"]
    if reqs[1]["path"] == "/v1/chat/completions":
        assert sent["tools"][0]["type"] == "function"
        assert sent["tools"][0]["function"]["parameters"]["required"] == ["path"]
        assert reqs[0]["body"]["tool_choice"] == "auto"
        assert openai_tool_turns(sent["messages"]) == [(ids, ids)]
        assistant = next(m for m in sent["messages"] if m.get("tool_calls"))
        assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {
            "path": "src/main.rs"
        }
    else:
        assert anthropic_tool_turns(sent["messages"]) == [(ids, ids)]
        assert sent["messages"] == json.loads(json.dumps(history))


# A 1x1 transparent PNG.
PNG_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)


def test_image_and_cache_control(anthropic_client, target, seen, user):
    log = seen(target["fake"])
    system = [
        {"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}},
    ]
    message = anthropic_client.messages.create(
        model=target["model"],
        max_tokens=256,
        system=system,
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64},
                    },
                    {"type": "text", "text": "What is in this screenshot?"},
                ],
            }
        ],
    )
    assert message.stop_reason == "end_turn"
    [req] = log.new()
    body = req["body"]
    if req["path"] == "/v1/chat/completions":
        user = body["messages"][-1]
        image = next(p for p in user["content"] if p["type"] == "image_url")
        assert image["image_url"]["url"] == f"data:image/png;base64,{PNG_B64}"
        assert "cache_control" not in json.dumps(body), "no Anthropic field leaks to OpenAI"
    else:
        # Same API: prompt-caching markers pass through untouched.
        assert body["system"] == system
        assert body["messages"][0]["content"][0]["source"]["data"] == PNG_B64


def test_bearer_app_credential(keel, user):
    # Current Anthropic SDKs may authenticate with a bearer token instead.
    client = anthropic.Anthropic(base_url=keel.url, auth_token=APP_KEY, max_retries=0)
    message = client.messages.create(model="claude-compat", max_tokens=16, messages=user)
    assert message.stop_reason == "end_turn"


def test_models_list_in_anthropic_shape(anthropic_client):
    page = anthropic_client.models.list()
    names = [m.id for m in page.data]
    assert {"gpt-compat", "claude-compat"} <= set(names)
    assert all(m.type == "model" for m in page.data)


def test_app_key_is_checked(anthropic_client, user):
    bad = anthropic_client.with_options(api_key="not-the-app-key")
    try:
        bad.messages.create(model="claude-compat", max_tokens=16, messages=user)
    except anthropic.AuthenticationError as e:
        assert e.status_code == 401
        assert e.body["type"] == "error"
    else:
        raise AssertionError("a wrong app key must be refused")
