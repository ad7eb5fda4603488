use serde_json::{Map, Value, json};

use super::super::test_support::{assert_names_field, fixture, replay};
use super::*;

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

#[test]
fn a_tool_using_history_becomes_chat_messages() {
    let body = obj(json!({
        "model": "gpt-5", "instructions": "Be brief.", "stream": true,
        "max_output_tokens": 300, "reasoning": {"effort": "high", "summary": "auto"},
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Rules."}]},
            {"role": "user", "content": "List files"},
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "opaque"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Sure."}]},
            {"type": "function_call", "call_id": "call_1", "name": "exec_command", "arguments": "{\"cmd\":\"ls\"}"},
            {"type": "function_call", "call_id": "call_2", "name": "exec_command", "arguments": "{\"cmd\":\"pwd\"}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "a.txt"},
            {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "/w"}]}
        ],
        "tools": [
            {"type": "function", "name": "exec_command", "parameters": {"type": "object"}, "strict": false},
            {"type": "web_search"}
        ],
        "tool_choice": "auto", "parallel_tool_calls": true, "store": false
    }));
    let chat = responses_to_chat_request(&body, "up-model").unwrap();
    let messages = chat["messages"].as_array().unwrap();
    let roles: Vec<&str> = messages
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        ["system", "system", "user", "assistant", "tool", "tool"]
    );
    assert_eq!(messages[0]["content"], "Be brief.");
    assert_eq!(messages[3]["content"], "Sure.");
    assert_eq!(
        messages[3]["tool_calls"].as_array().unwrap().len(),
        2,
        "calls join the message"
    );
    assert_eq!(
        messages[5],
        json!({"role": "tool", "tool_call_id": "call_2", "content": "/w"})
    );
    assert_eq!(
        chat["tools"].as_array().unwrap().len(),
        1,
        "hosted tools are dropped"
    );
    assert_eq!(chat["tools"][0]["function"]["name"], "exec_command");
    assert_eq!(chat["max_completion_tokens"], 300);
    assert_eq!(chat["reasoning_effort"], "high");
    assert_eq!(chat["stream_options"]["include_usage"], true);
    assert!(chat.get("store").is_none() && chat.get("input").is_none());

    // The same history to Anthropic, through the Chat translator.
    let anthropic = super::super::openai_to_anthropic_request(&chat, "claude", 1024).unwrap();
    assert_eq!(anthropic["system"][0]["text"], "Be brief.");
    let last = anthropic["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["content"][0]["type"], "tool_result");
    assert_eq!(last["content"][1]["tool_use_id"], "call_2");
}

#[test]
fn bad_items_name_their_field() {
    let body = obj(json!({"input": [{"type": "function_call", "name": "f"}]}));
    assert_names_field(responses_to_chat_request(&body, "m"), "input[0].call_id");
    let body = obj(json!({"input": [{"type": "item_reference", "id": "x"}]}));
    assert_names_field(responses_to_chat_request(&body, "m"), "input[0].type");
}

#[test]
fn a_chat_answer_with_tool_calls_becomes_a_response() {
    let chat: Value =
        serde_json::from_str(&fixture("openai/chat_completion_tool_call.json")).unwrap();
    let r = chat_to_responses_response(&chat, "strong-1");
    assert_eq!(r["object"], "response");
    assert_eq!(r["status"], "completed");
    assert_eq!(r["model"], "strong-1");
    assert!(r["id"].as_str().unwrap().starts_with("resp_"));
    let output = r["output"].as_array().unwrap();
    assert_eq!(output[0]["type"], "function_call");
    assert_eq!(output[0]["call_id"], "call_Xk3vQ9mR2tLp8sWd4nHy6bJc");
    assert_eq!(
        output[1]["arguments"],
        "{\"command\":\"cargo build\",\"timeout_secs\":120}"
    );
    assert!(r["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert!(r["usage"]["total_tokens"].as_u64().is_some());
}

/// Checks the Responses stream grammar: numbered in order, one created/in_progress first,
/// items added before their deltas and done after, one terminal event last.
fn check_grammar(frames: &[super::super::test_support::Frame]) -> Vec<Value> {
    let events: Vec<Value> = frames.iter().map(|f| f.json()).collect();
    for (i, (f, e)) in frames.iter().zip(&events).enumerate() {
        assert_eq!(e["sequence_number"], i, "{e}");
        assert_eq!(
            f.event,
            e["type"].as_str().unwrap(),
            "event name is the type"
        );
    }
    assert_eq!(events[0]["type"], "response.created");
    assert_eq!(events[1]["type"], "response.in_progress");
    let mut open = std::collections::HashSet::new();
    for e in &events[2..events.len() - 1] {
        let index = e["output_index"].as_u64().unwrap();
        match e["type"].as_str().unwrap() {
            "response.output_item.added" => assert!(open.insert(index)),
            "response.output_item.done" => assert!(open.remove(&index)),
            _ => assert!(open.contains(&index), "{e} outside its item"),
        }
    }
    // A failed response leaves its partial items unfinished.
    if events.last().unwrap()["type"] != "response.failed" {
        assert!(open.is_empty());
    }
    events
}

#[test]
fn a_chat_stream_with_tool_calls_becomes_responses_events() {
    let mut ids = Vec::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let mut t = chat_stream_to_responses(
        "strong-1",
        Some(Box::new(move |id: &str| {
            let _ = tx.send(id.to_owned());
        })),
    );
    let frames = replay(t.as_mut(), &fixture("openai/stream_tool_call.sse"));
    ids.extend(rx.try_iter());
    let events = check_grammar(&frames);
    let last = events.last().unwrap();
    assert_eq!(last["type"], "response.completed");
    assert_eq!(ids, [last["response"]["id"].as_str().unwrap()]);
    let output = last["response"]["output"].as_array().unwrap();
    let kinds: Vec<&str> = output.iter().map(|o| o["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["message", "function_call", "function_call"]);
    assert_eq!(
        output[0]["content"][0]["text"],
        "Let me look at the file first."
    );
    assert_eq!(output[1]["arguments"], "{\"path\":\"src/main.rs\"}");
    assert_eq!(output[1]["call_id"], "call_Hq2sW8nZ4kVb7xLm1cTf9RgD");
    let done = events
        .iter()
        .find(|e| e["type"] == "response.function_call_arguments.done")
        .unwrap();
    assert_eq!(done["arguments"], "{\"path\":\"src/main.rs\"}");
    assert!(t.completed());
    assert!(t.usage().input_tokens > 0, "usage from the usage chunk");
    assert_eq!(
        t.finish_reason(),
        Some("tool_calls"),
        "as the provider sent it"
    );
}

#[test]
fn an_anthropic_stream_becomes_responses_events() {
    let mut t = anthropic_stream_to_responses("strong-1", None);
    let frames = replay(t.as_mut(), &fixture("anthropic/stream_tool_use.sse"));
    assert_eq!(
        t.finish_reason(),
        Some("tool_use"),
        "as the provider sent it"
    );
    let events = check_grammar(&frames);
    let last = events.last().unwrap();
    assert_eq!(last["type"], "response.completed");
    let output = last["response"]["output"].as_array().unwrap();
    assert!(output.iter().any(|o| o["type"] == "function_call"));
    assert_eq!(
        last["response"]["usage"]["output_tokens"],
        t.usage().output_tokens
    );
    assert!(t.completed());
}

#[test]
fn a_cut_stream_fails_the_response() {
    let sse = fixture("openai/stream_text.sse");
    let cut: String = sse
        .split("\n\n")
        .take(2)
        .map(|f| format!("{f}\n\n"))
        .collect();
    let mut t = chat_stream_to_responses("m", None);
    let events = check_grammar(&replay(t.as_mut(), &cut));
    assert_eq!(events.last().unwrap()["type"], "response.failed");
    assert_eq!(events.last().unwrap()["response"]["status"], "failed");
    assert!(!t.completed());
}

#[test]
fn a_native_stream_is_relayed_untouched_and_watched() {
    let sse = "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_up\",\"model\":\"m\",\"status\":\"in_progress\",\"output\":[]}}\n\n\
event: response.output_item.done\ndata: {\"type\":\"response.output_item.done\",\"sequence_number\":1,\"output_index\":0,\"item\":{\"type\":\"reasoning\",\"id\":\"rs_1\",\"summary\":[],\"encrypted_content\":\"gAAA==\"}}\n\n\
event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":2,\"response\":{\"id\":\"resp_up\",\"status\":\"completed\",\"output\":[],\"usage\":{\"input_tokens\":12,\"input_tokens_details\":{\"cached_tokens\":4},\"output_tokens\":3,\"total_tokens\":15}}}\n\n";
    let (tx, rx) = std::sync::mpsc::channel();
    let mut t = responses_passthrough(Some(Box::new(move |id: &str| {
        let _ = tx.send(id.to_owned());
    })));
    let mut out = Vec::new();
    for f in super::super::test_support::parse_sse(sse) {
        t.push(&f.event, &f.data, &mut out);
    }
    t.finish(&mut out);
    assert_eq!(String::from_utf8(out).unwrap(), sse, "byte for byte");
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), ["resp_up"]);
    assert!(t.completed());
    assert_eq!(
        t.finish_reason(),
        Some("completed"),
        "the response's status"
    );
    assert_eq!(
        (
            t.usage().input_tokens,
            t.usage().cached_input_tokens,
            t.usage().output_tokens
        ),
        (12, 4, 3)
    );
}
