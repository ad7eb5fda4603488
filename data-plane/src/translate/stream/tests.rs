use serde_json::{Value, json};

use super::super::test_support::{Frame, fixture, frames, parse_sse, replay};
use super::super::{Format, Usage};
use super::*;

/// OpenAI output: no `event:` lines, JSON chunks, then exactly one trailing `[DONE]`.
fn openai_chunks(frames: &[Frame]) -> Vec<Value> {
    assert!(
        frames.iter().all(|f| f.event.is_empty()),
        "OpenAI frames carry no event name"
    );
    let (last, rest) = frames.split_last().expect("some output");
    assert_eq!(last.data, "[DONE]");
    rest.iter().map(Frame::json).collect()
}

/// Anthropic output: every frame's `event:` equals its data's `type`.
fn anthropic_events(frames: &[Frame]) -> Vec<Value> {
    frames
        .iter()
        .map(|f| {
            let v = f.json();
            assert_eq!(v["type"], f.event.as_str(), "event line matches type");
            v
        })
        .collect()
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

#[test]
fn anthropic_text_stream_to_openai_with_usage_chunk() {
    let mut t = anthropic_stream_to_openai("gpt-4o", true);
    let chunks = openai_chunks(&replay(t.as_mut(), &fixture("anthropic/stream_text.sse")));
    for c in &chunks {
        assert_eq!(c["id"], "chatcmpl-01Tx4pLm8QvZ2cNw6RyB3sKe");
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["model"], "gpt-4o");
    }
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        text,
        "The build fails because `serde_json` is not a dependency. Add it to Cargo.toml."
    );
    let (usage_chunk, rest) = chunks.split_last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(
        usage_chunk["usage"],
        json!({"prompt_tokens": 1840, "completion_tokens": 17, "total_tokens": 1857,
               "prompt_tokens_details": {"cached_tokens": 1788}})
    );
    let finish = rest.last().unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert_eq!(finish["choices"][0]["delta"], json!({}));
    assert!(
        rest.iter()
            .all(|c| c["usage"].is_null() && c.get("usage").is_some())
    );
    assert!(
        rest[..rest.len() - 1]
            .iter()
            .all(|c| c["choices"][0]["finish_reason"].is_null())
    );
    assert!(t.completed());
    assert_eq!(
        t.usage(),
        Usage {
            input_tokens: 1840,
            output_tokens: 17,
            cached_input_tokens: 1788,
            cache_creation_tokens: 0
        }
    );
}

#[test]
fn anthropic_tool_stream_to_openai_tool_call_deltas() {
    let mut t = anthropic_stream_to_openai("gpt-4o", false);
    let chunks = openai_chunks(&replay(
        t.as_mut(),
        &fixture("anthropic/stream_tool_use.sse"),
    ));
    assert!(
        chunks.iter().all(|c| c.get("usage").is_none()),
        "no usage without include_usage"
    );
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
        .collect();
    for (index, id, name, args) in [
        (
            0,
            "toolu_01Bq7XnV4cRk2TzW9sLm3YdH",
            "read_file",
            json!({"path": "src/main.rs"}),
        ),
        (
            1,
            "toolu_01Fp3GkT8wNa6VyQ1rJx5ZcE",
            "run_command",
            json!({"command": "cargo build", "timeout_secs": 120}),
        ),
    ] {
        let mine: Vec<&&Value> = calls.iter().filter(|c| c["index"] == index).collect();
        let (first, later) = mine.split_first().unwrap();
        assert_eq!(first["id"], id);
        assert_eq!(first["type"], "function");
        assert_eq!(first["function"]["name"], name);
        assert!(!later.is_empty());
        for c in later {
            assert!(
                c.get("id").is_none() && c["function"].get("name").is_none(),
                "{c}"
            );
        }
        let joined: String = mine
            .iter()
            .filter_map(|c| c["function"]["arguments"].as_str())
            .collect();
        assert_eq!(serde_json::from_str::<Value>(&joined).unwrap(), args);
    }
    assert_eq!(
        t.usage(),
        Usage {
            input_tokens: 318 + 256 + 1646,
            output_tokens: 112,
            cached_input_tokens: 1646,
            cache_creation_tokens: 256
        }
    );
}

#[test]
fn openai_text_stream_to_anthropic_events() {
    let mut t = openai_stream_to_anthropic("claude-sonnet-4-5");
    let events = anthropic_events(&replay(t.as_mut(), &fixture("openai/stream_text.sse")));
    let mut expected = vec!["message_start", "content_block_start"];
    expected.extend(std::iter::repeat_n("content_block_delta", 14));
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(types(&events), expected);
    let start = &events[0]["message"];
    assert_eq!(start["id"], "msg_CkQ9hW6pB2rNx4TzK8vLc1MfG5sEy");
    assert_eq!(start["model"], "claude-sonnet-4-5");
    assert_eq!(start["content"], json!([]));
    assert_eq!(
        events[1]["content_block"],
        json!({"type": "text", "text": ""})
    );
    let text: String = events
        .iter()
        .filter_map(|e| e["delta"]["text"].as_str())
        .collect();
    assert_eq!(
        text,
        "The build fails because `serde_json` is not a dependency. Add it to Cargo.toml."
    );
    let delta = &events[events.len() - 2];
    assert_eq!(
        delta["delta"],
        json!({"stop_reason": "end_turn", "stop_sequence": null})
    );
    assert_eq!(
        delta["usage"],
        json!({"input_tokens": 307, "cache_read_input_tokens": 1536, "cache_creation_input_tokens": 0, "output_tokens": 14})
    );
    assert!(t.completed());
    assert_eq!(t.usage().input_tokens, 1843);
}

#[test]
fn openai_tool_stream_to_anthropic_blocks() {
    let mut t = openai_stream_to_anthropic("claude");
    let events = anthropic_events(&replay(t.as_mut(), &fixture("openai/stream_tool_call.sse")));
    let starts: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "content_block_start")
        .collect();
    assert_eq!(starts.len(), 3);
    assert_eq!(starts[0]["index"], 0);
    assert_eq!(starts[0]["content_block"]["type"], "text");
    assert_eq!(
        starts[1]["content_block"],
        json!({"type": "tool_use", "id": "call_Hq2sW8nZ4kVb7xLm1cTf9RgD", "name": "read_file", "input": {}})
    );
    assert_eq!(starts[2]["index"], 2);
    assert_eq!(starts[2]["content_block"]["name"], "run_command");
    // Blocks never overlap: each start is preceded by the previous block's stop.
    let mut open: Option<u64> = None;
    for e in &events {
        match e["type"].as_str().unwrap() {
            "content_block_start" => assert_eq!(open.replace(e["index"].as_u64().unwrap()), None),
            "content_block_delta" => assert_eq!(open, e["index"].as_u64()),
            "content_block_stop" => assert_eq!(open.take(), e["index"].as_u64()),
            "message_delta" => assert_eq!(open, None),
            _ => {}
        }
    }
    for (index, args) in [
        (1, json!({"path": "src/main.rs"})),
        (2, json!({"command": "cargo build", "timeout_secs": 120})),
    ] {
        let joined: String = events
            .iter()
            .filter(|e| e["index"] == index)
            .filter_map(|e| e["delta"]["partial_json"].as_str())
            .collect();
        assert_eq!(serde_json::from_str::<Value>(&joined).unwrap(), args);
    }
    let delta = &events[events.len() - 2];
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert_eq!(delta["usage"]["cache_read_input_tokens"], 2048);
    assert_eq!(delta["usage"]["input_tokens"], 162);
    assert_eq!(types(&events).last(), Some(&"message_stop"));
}

#[test]
fn frames_are_emitted_immediately() {
    let mut t = anthropic_stream_to_openai("m", false);
    let mut out = Vec::new();
    t.push(
        "message_start",
        r#"{"type":"message_start","message":{"id":"msg_1","usage":{"input_tokens":3}}}"#,
        &mut out,
    );
    assert_eq!(frames(&out).len(), 1);
    out.clear();
    t.push(
        "content_block_delta",
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#,
        &mut out,
    );
    assert_eq!(
        frames(&out)[0].json()["choices"][0]["delta"]["content"],
        "Hi"
    );

    let mut t = openai_stream_to_anthropic("m");
    let mut out = Vec::new();
    t.push(
        "",
        r#"{"id":"chatcmpl-1","choices":[{"index":0,"delta":{"content":"Hi"}}]}"#,
        &mut out,
    );
    let events = anthropic_events(&frames(&out));
    assert_eq!(
        types(&events),
        [
            "message_start",
            "content_block_start",
            "content_block_delta"
        ]
    );
}

#[test]
fn openai_upstream_waits_for_usage_chunk_before_message_delta() {
    let mut t = openai_stream_to_anthropic("m");
    let mut out = Vec::new();
    t.push("", r#"{"id":"chatcmpl-1","choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":null}],"usage":null}"#, &mut out);
    t.push("", r#"{"id":"chatcmpl-1","choices":[{"index":0,"delta":{},"finish_reason":"length"}],"usage":null}"#, &mut out);
    assert_eq!(
        types(&anthropic_events(&frames(&out))).last(),
        Some(&"content_block_stop")
    );
    t.push(
        "",
        r#"{"id":"chatcmpl-1","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2}}"#,
        &mut out,
    );
    let events = anthropic_events(&frames(&out));
    assert_eq!(
        types(&events)[events.len() - 2..],
        ["message_delta", "message_stop"]
    );
    assert_eq!(
        events[events.len() - 2]["delta"]["stop_reason"],
        "max_tokens"
    );
    assert_eq!(events[events.len() - 2]["usage"]["input_tokens"], 9);
    let len = out.len();
    t.push("", "[DONE]", &mut out);
    t.finish(&mut out);
    assert_eq!(out.len(), len, "nothing after message_stop");
}

#[test]
fn openai_upstream_without_usage_ends_at_done() {
    let mut t = openai_stream_to_anthropic("m");
    let sse = "data: {\"id\":\"chatcmpl-2\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n\
               data: {\"id\":\"chatcmpl-2\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\n\
               data: {\"id\":\"chatcmpl-2\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}}]}\n\n\
               data: {\"id\":\"chatcmpl-2\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"b\"}}]}\n\n\
               data: {\"id\":\"chatcmpl-2\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n\
               data: [DONE]\n\n";
    let events = anthropic_events(&replay(t.as_mut(), sse));
    assert_eq!(
        types(&events),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(events[7]["index"], 2);
    assert_eq!(events[10]["usage"]["output_tokens"], 0);
    assert!(t.completed());
}

#[test]
fn upstream_error_events_become_caller_errors() {
    let mut t = anthropic_stream_to_openai("m", true);
    let mut out = Vec::new();
    t.push(
        "message_start",
        r#"{"type":"message_start","message":{"id":"msg_1"}}"#,
        &mut out,
    );
    t.push(
        "error",
        r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        &mut out,
    );
    t.push("message_stop", r#"{"type":"message_stop"}"#, &mut out);
    t.finish(&mut out);
    let f = frames(&out);
    assert_eq!(f.len(), 2, "no [DONE] after an error");
    assert_eq!(
        f[1].json(),
        json!({"error": {"message": "Overloaded", "type": "overloaded_error", "param": null, "code": null}})
    );
    assert!(!t.completed());

    let mut t = openai_stream_to_anthropic("m");
    let mut out = Vec::new();
    t.push(
        "",
        r#"{"error":{"message":"The server had an error","type":"server_error"}}"#,
        &mut out,
    );
    t.finish(&mut out);
    let f = frames(&out);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].event, "error");
    assert_eq!(
        f[0].json(),
        json!({"type": "error", "error": {"type": "api_error", "message": "The server had an error"}})
    );
}

#[test]
fn fail_and_truncated_finish_emit_errors_once() {
    for mut t in [
        anthropic_stream_to_openai("m", true),
        passthrough(Format::Anthropic, false),
    ] {
        let mut out = Vec::new();
        t.push(
            "message_start",
            r#"{"type":"message_start","message":{"id":"msg_1"}}"#,
            &mut out,
        );
        t.fail("connection reset", &mut out);
        t.fail("again", &mut out);
        let f = frames(&out);
        assert_eq!(f.len(), 2);
        assert_eq!(f[1].json()["error"]["message"], "connection reset");
        assert_eq!(f[1].json()["error"]["type"], "api_error");
        assert!(!t.completed());
    }

    let mut t = openai_stream_to_anthropic("m");
    let mut out = Vec::new();
    t.push(
        "",
        r#"{"id":"chatcmpl-1","choices":[{"index":0,"delta":{"content":"par"}}]}"#,
        &mut out,
    );
    t.finish(&mut out);
    let events = anthropic_events(&frames(&out));
    assert_eq!(types(&events).last(), Some(&"error"));
    assert!(!t.completed());

    // A stop reason without message_stop still closes the OpenAI caller properly.
    let mut t = anthropic_stream_to_openai("m", false);
    let mut out = Vec::new();
    t.push("", r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":3}}"#, &mut out);
    t.finish(&mut out);
    let chunks = openai_chunks(&frames(&out));
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );

    // Nothing is written once the stream ended normally.
    let mut t = anthropic_stream_to_openai("m", false);
    let mut out = Vec::new();
    replay(t.as_mut(), &fixture("anthropic/stream_text.sse"));
    t.fail("late", &mut out);
    assert!(out.is_empty());
}

#[test]
fn passthrough_relays_frames_and_reads_usage() {
    let sse = fixture("anthropic/stream_tool_use.sse");
    let mut p = passthrough(Format::Anthropic, false);
    assert_eq!(replay(p.as_mut(), &sse), parse_sse(&sse));
    assert!(p.completed());
    assert_eq!(p.usage().cached_input_tokens, 1646);
    assert_eq!(p.usage().output_tokens, 112);

    let sse = fixture("openai/stream_tool_call.sse");
    let mut p = passthrough(Format::OpenAi, false);
    assert_eq!(replay(p.as_mut(), &sse), parse_sse(&sse));
    assert!(p.completed());
    assert_eq!(
        p.usage(),
        Usage {
            input_tokens: 2210,
            output_tokens: 61,
            cached_input_tokens: 2048,
            cache_creation_tokens: 0
        }
    );
}

#[test]
fn passthrough_strips_only_the_usage_chunk_keel_asked_for() {
    let sse = fixture("openai/stream_tool_call.sse");
    let upstream = parse_sse(&sse);
    let mut p = passthrough(Format::OpenAi, true);
    let relayed = replay(p.as_mut(), &sse);
    assert_eq!(relayed.len(), upstream.len() - 1);
    assert!(
        relayed
            .iter()
            .all(|f| f.data == "[DONE]" || f.json()["choices"] != json!([]))
    );
    assert_eq!(relayed.last().map(|f| f.data.as_str()), Some("[DONE]"));
    assert_eq!(p.usage().output_tokens, 61);
}

#[test]
fn passthrough_ends_the_stream_once() {
    // A clean close before the end of the message is a truncation.
    let mut p = passthrough(Format::OpenAi, false);
    let mut out = Vec::new();
    p.push(
        "",
        r#"{"choices":[{"index":0,"delta":{"content":"par"}}]}"#,
        &mut out,
    );
    p.finish(&mut out);
    let f = frames(&out);
    assert_eq!(f.len(), 2);
    assert_eq!(f[1].json()["error"]["type"], "api_error");

    // The provider's own error event ends the stream: nothing of ours follows.
    let mut p = passthrough(Format::Anthropic, false);
    let mut out = Vec::new();
    p.push(
        "error",
        r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        &mut out,
    );
    p.finish(&mut out);
    assert_eq!(frames(&out).len(), 1);

    // After the normal end, neither finish nor fail writes anything.
    let mut p = passthrough(Format::OpenAi, false);
    replay(p.as_mut(), &fixture("openai/stream_text.sse"));
    let mut out = Vec::new();
    p.finish(&mut out);
    p.fail("late", &mut out);
    assert!(out.is_empty());
}

#[test]
fn garbage_input_never_panics() {
    let junk = [
        "",
        "not json",
        "[DONE]",
        "null",
        "[]",
        "42",
        r#"{"type":7}"#,
        r#"{"choices":"x","usage":5}"#,
        r#"{"type":"content_block_start","index":-1,"content_block":null}"#,
        r#"{"type":"content_block_delta","index":99,"delta":{"type":"input_json_delta","partial_json":"{"}}"#,
        r#"{"choices":[{"delta":{"tool_calls":[{"index":"a","function":null}]}}]}"#,
        r#"{"error":"boom"}"#,
    ];
    let makers: [fn() -> Box<dyn StreamTranslator>; 4] = [
        || anthropic_stream_to_openai("m", true),
        || openai_stream_to_anthropic("m"),
        || passthrough(Format::OpenAi, true),
        || passthrough(Format::Anthropic, false),
    ];
    for make in makers {
        let mut t = make();
        let mut out = Vec::new();
        for (i, data) in junk.iter().enumerate() {
            t.push(
                if i % 2 == 0 { "" } else { "message_delta" },
                data,
                &mut out,
            );
        }
        t.finish(&mut out);
        t.fail("x", &mut out);
        frames(&out);
    }
}

#[test]
fn every_stream_reports_the_providers_finish_reason_as_sent() {
    let cases: [(Box<dyn StreamTranslator>, &str, &str); 6] = [
        (
            anthropic_stream_to_openai("m", true),
            "anthropic/stream_text.sse",
            "end_turn",
        ),
        (
            anthropic_stream_to_openai("m", false),
            "anthropic/stream_tool_use.sse",
            "tool_use",
        ),
        (
            openai_stream_to_anthropic("m"),
            "openai/stream_tool_call.sse",
            "tool_calls",
        ),
        (
            passthrough(Format::Anthropic, false),
            "anthropic/stream_tool_use.sse",
            "tool_use",
        ),
        (
            passthrough(Format::OpenAi, true),
            "openai/stream_tool_call.sse",
            "tool_calls",
        ),
        (
            passthrough(Format::OpenAi, false),
            "openai/stream_text.sse",
            "stop",
        ),
    ];
    for (mut t, file, want) in cases {
        assert_eq!(t.finish_reason(), None, "{file}: none before the end");
        replay(t.as_mut(), &fixture(file));
        assert_eq!(t.finish_reason(), Some(want), "{file}");
    }
}

#[test]
fn whole_answers_and_unknown_reasons() {
    let openai: Value =
        serde_json::from_str(&fixture("openai/chat_completion_tool_call.json")).expect("fixture");
    let anthropic: Value =
        serde_json::from_str(&fixture("anthropic/message.json")).expect("fixture");
    assert_eq!(
        super::super::finish_reason_of(Format::OpenAi, &openai),
        Some("tool_calls")
    );
    assert_eq!(
        super::super::finish_reason_of(Format::Anthropic, &anthropic),
        Some("end_turn")
    );
    assert_eq!(
        super::super::finish_reason_of(Format::OpenAi, &json!({})),
        None
    );
    assert_eq!(super::super::reason_as_sent("a-new-reason"), "other");
    let incomplete = json!({"status": "incomplete",
        "incomplete_details": {"reason": "max_output_tokens"}});
    assert_eq!(
        super::super::responses_finish_reason(&incomplete),
        Some("max_output_tokens")
    );
    assert_eq!(
        super::super::responses_finish_reason(&json!({"status": "completed"})),
        Some("completed")
    );
}
