use serde_json::{Map, Value, json};

use super::super::super::test_support::assert_names_field;
use super::*;

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().expect("test body is an object")
}

fn translate(v: Value) -> Result<Map<String, Value>, TranslateError> {
    anthropic_to_openai_request(&obj(v), "gpt-4o", true)
}

/// A Claude Code style session: cached system blocks, thinking, parallel tool use, an
/// errored tool result, a screenshot returned by a tool, and plain string turns.
fn agent_conversation() -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 4096,
        "system": [
            {"type": "text", "text": "You are a coding agent.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Be brief."},
            // Where the sidecar injects its nudges: after the app's system prompt.
            {"type": "text", "text": "Session note."}
        ],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Why does the build fail?", "cache_control": {"type": "ephemeral"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
            ]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Check Cargo.toml first.", "signature": "EqQBCkYIBxgCKkA"},
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_01Bq", "name": "read_file", "input": {"path": "Cargo.toml"}},
                {"type": "tool_use", "id": "toolu_01Fp", "name": "run_command", "input": {"command": "cargo build"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01Bq", "content": "[package]\nname = \"demo\""},
                {"type": "tool_result", "tool_use_id": "toolu_01Fp", "is_error": true,
                    "content": [{"type": "text", "text": "exit status 101"}]},
                {"type": "text", "text": "The CI log says the same."}
            ]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_01Sc", "name": "screenshot", "input": {}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01Sc", "content": [
                    {"type": "text", "text": "captured"},
                    {"type": "image", "source": {"type": "url", "url": "https://ci.example.com/s.png"}}
                ]}
            ]},
            {"role": "assistant", "content": "Add serde_json to [dependencies]."},
            {"role": "user", "content": "Thanks."}
        ],
        "stop_sequences": ["</answer>"],
        "temperature": 0.2,
        "top_p": 0.95,
        "top_k": 40,
        "stream": true,
        "metadata": {"user_id": "user-42"},
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "service_tier": "auto",
        "tools": [
            {"name": "read_file", "description": "Read a file",
                "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
                "cache_control": {"type": "ephemeral"}},
            {"type": "custom", "name": "screenshot", "input_schema": {"type": "object"}}
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true}
    })
}

#[test]
fn agent_conversation_translates_exactly() {
    let out = anthropic_to_openai_request(&obj(agent_conversation()), "gpt-4o", true)
        .expect("translates");
    let expected = json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are a coding agent.\n\nBe brief.\n\nSession note."},
            {"role": "user", "content": [
                {"type": "text", "text": "Why does the build fail?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
            ]},
            {"role": "assistant", "content": "Let me check.", "tool_calls": [
                {"id": "toolu_01Bq", "type": "function", "function": {"name": "read_file", "arguments": "{\"path\":\"Cargo.toml\"}"}},
                {"id": "toolu_01Fp", "type": "function", "function": {"name": "run_command", "arguments": "{\"command\":\"cargo build\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "toolu_01Bq", "content": "[package]\nname = \"demo\""},
            {"role": "tool", "tool_call_id": "toolu_01Fp", "content": "Error: exit status 101"},
            {"role": "user", "content": "The CI log says the same."},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "toolu_01Sc", "type": "function", "function": {"name": "screenshot", "arguments": "{}"}}
            ]},
            {"role": "tool", "tool_call_id": "toolu_01Sc", "content": "captured"},
            {"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "https://ci.example.com/s.png"}}
            ]},
            {"role": "assistant", "content": "Add serde_json to [dependencies]."},
            {"role": "user", "content": "Thanks."}
        ],
        "max_completion_tokens": 4096,
        "temperature": 0.2,
        "top_p": 0.95,
        "stop": ["</answer>"],
        "stream": true,
        "stream_options": {"include_usage": true},
        "user": "user-42",
        "tool_choice": "required",
        "parallel_tool_calls": false,
        "tools": [
            {"type": "function", "function": {"name": "read_file", "description": "Read a file",
                "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}},
            {"type": "function", "function": {"name": "screenshot", "parameters": {"type": "object"}}}
        ]
    });
    assert_eq!(Value::Object(out), expected);
}

#[test]
fn stream_usage_only_when_streaming_and_wanted() {
    let base =
        json!({"max_tokens": 10, "messages": [{"role": "user", "content": "hi"}], "stream": true});
    let out = anthropic_to_openai_request(&obj(base.clone()), "m", false).unwrap();
    assert!(!out.contains_key("stream_options"));
    let mut no_stream = base;
    no_stream["stream"] = json!(false);
    let out = anthropic_to_openai_request(&obj(no_stream), "m", true).unwrap();
    assert!(!out.contains_key("stream_options"));
    assert_eq!(out["stream"], false);
}

#[test]
fn string_system_and_tool_choice_forms() {
    let body = |choice: Value| {
        json!({"max_tokens": 10, "system": "Be brief.", "messages": [{"role": "user", "content": "hi"}],
               "tools": [{"name": "f", "input_schema": {"type": "object"}}], "tool_choice": choice})
    };
    let out = translate(body(json!({"type": "auto"}))).unwrap();
    assert_eq!(
        out["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(out["tool_choice"], "auto");
    assert!(!out.contains_key("parallel_tool_calls"));
    assert_eq!(
        translate(body(json!({"type": "none"}))).unwrap()["tool_choice"],
        "none"
    );
    let out = translate(body(
        json!({"type": "tool", "name": "f", "disable_parallel_tool_use": false}),
    ))
    .unwrap();
    assert_eq!(
        out["tool_choice"],
        json!({"type": "function", "function": {"name": "f"}})
    );
    assert_eq!(out["parallel_tool_calls"], true);
}

fn assert_err(body: Value, field: &str) {
    assert_names_field(translate(body), field);
}

#[test]
fn bad_inputs_name_the_field() {
    let user = json!({"role": "user", "content": "hi"});
    let msgs = |m: Value| json!({"max_tokens": 10, "messages": m});
    assert_err(json!({"max_tokens": 10}), "messages");
    assert_err(
        msgs(json!([{"role": "tool", "content": "x"}])),
        "messages[0].role",
    );
    assert_err(msgs(json!([{"role": "user"}])), "messages[0].content");
    assert_err(
        msgs(json!([{"role": "user", "content": 3}])),
        "messages[0].content",
    );
    assert_err(
        msgs(
            json!([{"role": "assistant", "content": [{"type": "tool_use", "name": "f", "input": {}}]}]),
        ),
        "messages[0].content[0].id",
    );
    assert_err(
        msgs(
            json!([{"role": "user", "content": [{"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}}]}]),
        ),
        "messages[0].content[0].type",
    );
    assert_err(
        msgs(
            json!([{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "file_01"}}]}]),
        ),
        "messages[0].content[0].source.type",
    );
    assert_err(
        msgs(json!([{"role": "user", "content": [{"type": "image"}]}])),
        "messages[0].content[0].source",
    );
    assert_err(
        msgs(json!([{"role": "user", "content": [{"type": "tool_result", "content": "x"}]}])),
        "messages[0].content[0].tool_use_id",
    );
    assert_err(
        msgs(
            json!([{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "document"}]}]}]),
        ),
        "messages[0].content[0].content[0].type",
    );
    assert_err(
        msgs(
            json!([{"role": "assistant", "content": [{"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}}]}]),
        ),
        "messages[0].content[0].type",
    );
    assert_err(json!({"messages": [user], "system": 5}), "system");
    assert_err(
        json!({"messages": [user], "system": [{"type": "image"}]}),
        "system[0].type",
    );
    assert_err(
        json!({"messages": [user], "max_tokens": "lots"}),
        "max_tokens",
    );
    assert_err(
        json!({"messages": [user], "stop_sequences": [1]}),
        "stop_sequences[0]",
    );
    assert_err(json!({"messages": [user], "metadata": "x"}), "metadata");
    assert_err(
        json!({"messages": [user], "metadata": {"user_id": 9}}),
        "metadata.user_id",
    );
    assert_err(
        json!({"messages": [user], "tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
        "tools[0].type",
    );
    assert_err(
        json!({"messages": [user], "tools": [{"name": "f"}]}),
        "tools[0].input_schema",
    );
    let tools = json!([{"name": "f", "input_schema": {"type": "object"}}]);
    assert_err(
        json!({"messages": [user], "tools": tools, "tool_choice": {"type": "maybe"}}),
        "tool_choice.type",
    );
    assert_err(
        json!({"messages": [user], "tools": tools, "tool_choice": {"type": "tool"}}),
        "tool_choice.name",
    );
    assert_err(
        json!({"messages": [user], "tools": tools, "tool_choice": "auto"}),
        "tool_choice",
    );
}

#[test]
fn mid_conversation_system_messages_stay_in_place() {
    // Claude Code's shape: a system message after the first user turn.
    let out = translate(json!({
        "model": "m", "max_tokens": 10,
        "system": "You are a coding agent.",
        "messages": [
            {"role": "user", "content": "Fix the build."},
            {"role": "system", "content": "# Environment\nPlatform: linux"},
            {"role": "assistant", "content": "On it."},
            {"role": "system", "content": [{"type": "text", "text": "Reminder.", "cache_control": {"type": "ephemeral"}}]},
            {"role": "user", "content": "Go on."}
        ]
    }))
    .unwrap();
    let roles: Vec<&str> = out["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        ["system", "user", "system", "assistant", "system", "user"]
    );
    assert_eq!(
        out["messages"][2]["content"],
        "# Environment\nPlatform: linux"
    );
    assert_eq!(out["messages"][4]["content"], "Reminder.");
}
