use serde_json::{Map, Value, json};

use super::super::super::test_support::assert_names_field;
use super::*;

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().expect("test body is an object")
}

fn translate(v: Value) -> Result<Map<String, Value>, TranslateError> {
    openai_to_anthropic_request(&obj(v), "claude-sonnet-4-5", 1024)
}

/// An agent session: system + developer prompts, an image, two parallel tool calls and
/// their results, a user follow-up right after the tool results, and a second round trip.
fn agent_conversation() -> Value {
    json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are a coding agent."},
            {"role": "developer", "content": [
                {"type": "text", "text": "Repository rules: never force-push.", "cache_control": {"type": "ephemeral"}}
            ]},
            {"role": "user", "name": "ana", "content": [
                {"type": "text", "text": "Why does the build fail?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}}
            ]},
            {"role": "assistant", "content": "Let me check.", "tool_calls": [
                {"id": "call_Xk3v", "type": "function", "function": {"name": "read_file", "arguments": "{\"path\":\"Cargo.toml\"}"}},
                {"id": "call_Pz7f", "type": "function", "function": {"name": "run_command", "arguments": "{\"command\":\"cargo build\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_Xk3v", "content": "[package]\nname = \"demo\""},
            {"role": "tool", "tool_call_id": "call_Pz7f", "content": [{"type": "text", "text": "error[E0432]: unresolved import `serde_json`"}]},
            {"role": "user", "content": [
                {"type": "text", "text": "Here is the CI page too."},
                {"type": "image_url", "image_url": {"url": "https://ci.example.com/run/42.png"}}
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_Q1", "type": "function", "function": {"name": "list_dir", "arguments": ""}}
            ]},
            {"role": "tool", "tool_call_id": "call_Q1", "content": ""},
            {"role": "assistant", "content": ""},
            {"role": "assistant", "content": "Add serde_json to [dependencies]."},
            {"role": "user", "content": "Thanks."},
            // Where the sidecar injects its nudges: right before the latest message.
            {"role": "system", "content": "Session note: tests are slow."},
            {"role": "user", "content": "Now run the tests."}
        ],
        "max_completion_tokens": 2048,
        "max_tokens": 99,
        "temperature": 1.5,
        "top_p": 0.9,
        "stop": ["\n\nHuman:", ""],
        "stream": true,
        "stream_options": {"include_usage": true},
        "user": "user-42",
        "n": 1,
        "logprobs": false,
        "top_logprobs": 2,
        "presence_penalty": 0.5,
        "frequency_penalty": 0.1,
        "seed": 7,
        "logit_bias": {"50256": -100},
        "response_format": {"type": "text"},
        "store": false,
        "metadata": {"team": "core"},
        "tools": [
            {"type": "function", "function": {"name": "read_file", "description": "Read a file", "strict": true,
                "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}},
            {"type": "function", "function": {"name": "list_dir"}, "cache_control": {"type": "ephemeral"}}
        ],
        "tool_choice": "required",
        "parallel_tool_calls": false
    })
}

#[test]
fn agent_conversation_translates_exactly() {
    let out = openai_to_anthropic_request(&obj(agent_conversation()), "claude-sonnet-4-5", 1024)
        .expect("translates");
    let expected = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 2048,
        "system": [
            {"type": "text", "text": "You are a coding agent."},
            {"type": "text", "text": "Repository rules: never force-push.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Session note: tests are slow."}
        ],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Why does the build fail?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
            ]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "call_Xk3v", "name": "read_file", "input": {"path": "Cargo.toml"}},
                {"type": "tool_use", "id": "call_Pz7f", "name": "run_command", "input": {"command": "cargo build"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_Xk3v", "content": [{"type": "text", "text": "[package]\nname = \"demo\""}]},
                {"type": "tool_result", "tool_use_id": "call_Pz7f", "content": [{"type": "text", "text": "error[E0432]: unresolved import `serde_json`"}]},
                {"type": "text", "text": "Here is the CI page too."},
                {"type": "image", "source": {"type": "url", "url": "https://ci.example.com/run/42.png"}}
            ]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "call_Q1", "name": "list_dir", "input": {}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_Q1"}
            ]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Add serde_json to [dependencies]."}
            ]},
            {"role": "user", "content": [
                {"type": "text", "text": "Thanks."},
                {"type": "text", "text": "Now run the tests."}
            ]}
        ],
        "temperature": 1.0,
        "top_p": 0.9,
        "stop_sequences": ["\n\nHuman:"],
        "stream": true,
        "metadata": {"user_id": "user-42"},
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "tools": [
            {"name": "read_file", "description": "Read a file",
                "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}},
            {"name": "list_dir", "input_schema": {"type": "object", "properties": {}}, "cache_control": {"type": "ephemeral"}}
        ]
    });
    assert_eq!(Value::Object(out), expected);
}

#[test]
fn minimal_request_gets_default_max_tokens_and_nothing_else() {
    let out =
        translate(json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}))
            .unwrap();
    assert_eq!(
        Value::Object(out),
        json!({"model": "claude-sonnet-4-5", "max_tokens": 1024,
               "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]})
    );
}

#[test]
fn stop_string_max_tokens_and_tool_choice_forms() {
    let body = |choice: Value, parallel: Value| {
        json!({
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 300, "stop": "END",
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "tool_choice": choice, "parallel_tool_calls": parallel
        })
    };
    let out = translate(body(json!("auto"), Value::Null)).unwrap();
    assert_eq!(out["max_tokens"], 300);
    assert_eq!(out["stop_sequences"], json!(["END"]));
    assert_eq!(out["tool_choice"], json!({"type": "auto"}));
    let out = translate(body(json!("none"), json!(false))).unwrap();
    assert_eq!(out["tool_choice"], json!({"type": "none"}));
    let out = translate(body(
        json!({"type": "function", "function": {"name": "f"}}),
        json!(true),
    ))
    .unwrap();
    assert_eq!(out["tool_choice"], json!({"type": "tool", "name": "f"}));
    let out = translate(body(Value::Null, json!(false))).unwrap();
    assert_eq!(
        out["tool_choice"],
        json!({"type": "auto", "disable_parallel_tool_use": true})
    );
}

#[test]
fn tool_choice_without_tools_is_dropped() {
    let out = translate(json!({"messages": [{"role": "user", "content": "hi"}], "tool_choice": "required", "tools": []})).unwrap();
    assert!(!out.contains_key("tool_choice"));
    assert!(!out.contains_key("tools"));
}

#[test]
fn refusal_and_object_arguments_are_accepted() {
    let out = translate(json!({"messages": [
        {"role": "user", "content": "do it"},
        {"role": "assistant", "content": null, "refusal": "I can't help with that."},
        {"role": "user", "content": "ok, then list files"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "ls", "arguments": {"dir": "."}}}]}
    ]}))
    .unwrap();
    assert_eq!(
        out["messages"][1]["content"],
        json!([{"type": "text", "text": "I can't help with that."}])
    );
    assert_eq!(
        out["messages"][3]["content"][0]["input"],
        json!({"dir": "."})
    );
}

fn assert_err(body: Value, field: &str) {
    assert_names_field(translate(body), field);
}

fn with_messages(messages: Value) -> Value {
    json!({ "messages": messages })
}

#[test]
fn bad_inputs_name_the_field() {
    let user = json!({"role": "user", "content": "hi"});
    assert_err(json!({}), "messages");
    assert_err(json!({"messages": "hi"}), "messages");
    assert_err(with_messages(json!([])), "messages");
    assert_err(
        with_messages(json!([{"role": "system", "content": "only system"}])),
        "messages",
    );
    assert_err(with_messages(json!([7])), "messages[0]");
    assert_err(with_messages(json!([{"content": "x"}])), "messages[0].role");
    assert_err(
        with_messages(json!([{"role": "robot", "content": "x"}])),
        "messages[0].role",
    );
    assert_err(
        with_messages(json!([{"role": "function", "name": "f", "content": "x"}])),
        "messages[0].role",
    );
    assert_err(
        with_messages(json!([{"role": "user", "content": 5}])),
        "messages[0].content",
    );
    assert_err(
        with_messages(
            json!([user, {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{\"a\":"}}]}]),
        ),
        "messages[1].tool_calls[0].function.arguments",
    );
    assert_err(
        with_messages(
            json!([user, {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1,2]"}}]}]),
        ),
        "messages[1].tool_calls[0].function.arguments",
    );
    assert_err(
        with_messages(
            json!([user, {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{}"}}]}]),
        ),
        "messages[1].tool_calls[0].id",
    );
    assert_err(
        with_messages(
            json!([user, {"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}}]),
        ),
        "messages[1].function_call",
    );
    assert_err(
        with_messages(json!([user, {"role": "tool", "content": "42"}])),
        "messages[1].tool_call_id",
    );
    assert_err(
        with_messages(
            json!([{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]}]),
        ),
        "messages[0].content[0].type",
    );
    assert_err(
        with_messages(
            json!([{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}, user]),
        ),
        "messages[0].content[0].type",
    );
    assert_err(
        with_messages(
            json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,abc"}}]}]),
        ),
        "messages[0].content[0].image_url.url",
    );
    assert_err(
        with_messages(
            json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}]),
        ),
        "messages[0].content[0].image_url.url",
    );
    assert_err(json!({"messages": [user], "stop": 3}), "stop");
    assert_err(json!({"messages": [user], "stop": ["a", 3]}), "stop[1]");
    assert_err(
        json!({"messages": [user], "temperature": "hot"}),
        "temperature",
    );
    assert_err(json!({"messages": [user], "max_tokens": 0}), "max_tokens");
    assert_err(
        json!({"messages": [user], "max_completion_tokens": -5}),
        "max_completion_tokens",
    );
    assert_err(json!({"messages": [user], "stream": "yes"}), "stream");
    assert_err(json!({"messages": [user], "tools": {}}), "tools");
    assert_err(
        json!({"messages": [user], "tools": [{"type": "code_interpreter"}]}),
        "tools[0].type",
    );
    assert_err(
        json!({"messages": [user], "tools": [{"type": "function"}]}),
        "tools[0].function",
    );
    assert_err(
        json!({"messages": [user], "tools": [{"type": "function", "function": {"name": "f", "parameters": "x"}}]}),
        "tools[0].function.parameters",
    );
    let tools = json!([{"type": "function", "function": {"name": "f"}}]);
    assert_err(
        json!({"messages": [user], "tools": tools, "tool_choice": "sometimes"}),
        "tool_choice",
    );
    assert_err(
        json!({"messages": [user], "tools": tools, "tool_choice": {"type": "function"}}),
        "tool_choice.function.name",
    );
}
