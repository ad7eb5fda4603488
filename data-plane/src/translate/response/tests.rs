use serde_json::{Value, json};

use super::super::test_support::fixture_json;
use super::*;

#[test]
fn anthropic_text_message_to_chat_completion() {
    let v = anthropic_to_openai_response(&fixture_json("anthropic/message.json"), "gpt-4o");
    assert_eq!(v["id"], "chatcmpl-01KeeLFx7TqVn3ZpWb9R2sHd");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "gpt-4o");
    assert!(v["created"].as_u64().unwrap() > 1_700_000_000);
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(choice["message"]["role"], "assistant");
    assert!(
        choice["message"]["content"]
            .as_str()
            .unwrap()
            .starts_with("The build fails")
    );
    assert!(choice["message"].get("tool_calls").is_none());
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 1840, "completion_tokens": 44, "total_tokens": 1884,
               "prompt_tokens_details": {"cached_tokens": 1788}})
    );
}

#[test]
fn anthropic_tool_use_message_to_tool_calls() {
    let v =
        anthropic_to_openai_response(&fixture_json("anthropic/message_tool_use.json"), "gpt-4o");
    let msg = &v["choices"][0]["message"];
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        msg["content"],
        "I'll read the entry point and then try a build."
    );
    let calls = msg["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["id"], "toolu_01Bq7XnV4cRk2TzW9sLm3YdH");
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["name"], "read_file");
    let args: Value =
        serde_json::from_str(calls[1]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"command": "cargo build", "timeout_secs": 120}));
    assert_eq!(v["usage"]["prompt_tokens"], 318 + 1902);
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
}

#[test]
fn openai_completion_to_anthropic_message() {
    let v = openai_to_anthropic_response(
        &fixture_json("openai/chat_completion.json"),
        "claude-sonnet-4-5",
    );
    assert_eq!(v["id"], "msg_CkQ7x2Fh0aLzV9pTn3WbE5sYrD1uM");
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], "claude-sonnet-4-5");
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["stop_sequence"], Value::Null);
    assert_eq!(v["content"].as_array().unwrap().len(), 1);
    assert_eq!(v["content"][0]["type"], "text");
    assert_eq!(
        v["usage"],
        json!({"input_tokens": 307, "cache_read_input_tokens": 1536,
               "cache_creation_input_tokens": 0, "output_tokens": 41})
    );
}

#[test]
fn openai_tool_calls_to_tool_use_blocks() {
    let v = openai_to_anthropic_response(
        &fixture_json("openai/chat_completion_tool_call.json"),
        "claude",
    );
    assert_eq!(v["stop_reason"], "tool_use");
    assert_eq!(
        v["content"],
        json!([
            {"type": "tool_use", "id": "call_Xk3vQ9mR2tLp8sWd4nHy6bJc", "name": "read_file", "input": {"path": "src/main.rs"}},
            {"type": "tool_use", "id": "call_Pz7fN1cT5wGm0aKe3rVb8uYq", "name": "run_command",
                "input": {"command": "cargo build", "timeout_secs": 120}}
        ])
    );
}

#[test]
fn finish_and_stop_reasons_map_both_ways() {
    for (finish, stop) in [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
    ] {
        let oa = json!({"id": "chatcmpl-1", "choices": [{"message": {"content": "x"}, "finish_reason": finish}]});
        assert_eq!(
            openai_to_anthropic_response(&oa, "m")["stop_reason"],
            stop,
            "{finish}"
        );
    }
    for (stop, finish) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ] {
        let an =
            json!({"id": "msg_1", "content": [{"type": "text", "text": "x"}], "stop_reason": stop});
        assert_eq!(
            anthropic_to_openai_response(&an, "m")["choices"][0]["finish_reason"],
            finish,
            "{stop}"
        );
    }
}

#[test]
fn odd_upstream_bodies_never_panic() {
    for body in [
        json!(null),
        json!([]),
        json!("x"),
        json!({"content": 5}),
        json!({"choices": {}}),
    ] {
        let a = anthropic_to_openai_response(&body, "m");
        assert_eq!(a["object"], "chat.completion");
        assert!(a["id"].as_str().unwrap().starts_with("chatcmpl-"));
        let o = openai_to_anthropic_response(&body, "m");
        assert_eq!(o["type"], "message");
        assert!(o["id"].as_str().unwrap().starts_with("msg_"));
    }
    // Invalid tool arguments from the model become an empty object rather than a failure.
    let bad = json!({"choices": [{"message": {"tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{oops"}}]}, "finish_reason": "stop"}]});
    let v = openai_to_anthropic_response(&bad, "m");
    assert_eq!(v["content"][0]["input"], json!({}));
    assert_eq!(v["stop_reason"], "tool_use");
}
