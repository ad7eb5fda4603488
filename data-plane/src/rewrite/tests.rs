use keel::pb;
use serde_json::{Value, json};

use super::*;

fn target(format: Format) -> pb::Target {
    pb::Target {
        model: "catalog-name".into(),
        provider: "p".into(),
        upstream_model: "upstream-id".into(),
        wire_format: format.wire() as i32,
        ..Default::default()
    }
}

fn obj(v: Value) -> ChatBody {
    scanned(&v.to_string())
}

fn scanned(raw: &str) -> ChatBody {
    ChatBody::scan(bytes::Bytes::from(raw.to_owned())).expect("test bodies are objects")
}

fn nudge() -> Vec<pb::InjectedMessage> {
    vec![pb::InjectedMessage {
        role: "system".into(),
        content: "You are repeating yourself.".into(),
        reason: "divergence:repeated_action".into(),
    }]
}

fn sent(p: &Prepared) -> Value {
    serde_json::from_slice(&p.body).expect("prepared body is JSON")
}

#[test]
fn openai_to_anthropic_carries_the_nudge_once_and_fills_max_tokens() {
    let mut body = obj(json!({
        "model": "auto", "stream": true,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
    }));
    assert!(inject(Format::OpenAi, &mut body, &nudge()).unwrap());
    let p = prepare(
        Format::OpenAi,
        &mut body,
        &target(Format::Anthropic),
        true,
        false,
        512,
    )
    .expect("translates");
    assert!(!p.strip_usage_chunk);
    assert_eq!(
        sent(&p),
        json!({
            "model": "upstream-id", "max_tokens": 512, "stream": true,
            "system": [
                {"type": "text", "text": "Be brief."},
                {"type": "text", "text": "You are repeating yourself."}
            ],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        })
    );
}

#[test]
fn anthropic_to_openai_carries_the_nudge_once_and_asks_for_usage() {
    let mut body = obj(json!({
        "model": "claude", "max_tokens": 64, "stream": true, "system": "Be brief.",
        "messages": [{"role": "user", "content": "hi"}],
    }));
    assert!(inject(Format::Anthropic, &mut body, &nudge()).unwrap());
    let p = prepare(
        Format::Anthropic,
        &mut body,
        &target(Format::OpenAi),
        true,
        false,
        512,
    )
    .expect("translates");
    assert!(!p.strip_usage_chunk);
    let v = sent(&p);
    assert_eq!(
        v["messages"],
        json!([
            {"role": "system", "content": "Be brief.\n\nYou are repeating yourself."},
            {"role": "user", "content": "hi"}
        ])
    );
    assert_eq!(v["model"], "upstream-id");
    assert_eq!(v["stream_options"], json!({"include_usage": true}));
}

#[test]
fn openai_nudge_goes_before_the_latest_message_but_never_among_tool_results() {
    let mut body = obj(json!({"messages": [
        {"role": "user", "content": "build it"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "again"},
    ]}));
    assert!(inject(Format::OpenAi, &mut body, &nudge()).unwrap());
    let roles: Vec<&str> = body.tree().unwrap()["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["role"].as_str().expect("role"))
        .collect();
    assert_eq!(roles, ["user", "assistant", "system", "user"]);

    let calls = json!([
        {"id": "call_1", "type": "function", "function": {"name": "a", "arguments": "{}"}},
        {"id": "call_2", "type": "function", "function": {"name": "b", "arguments": "{}"}},
    ]);
    let mut body = obj(json!({"messages": [
        {"role": "user", "content": "build it"},
        {"role": "assistant", "content": null, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
        {"role": "tool", "tool_call_id": "call_2", "content": "error"},
    ]}));
    assert!(inject(Format::OpenAi, &mut body, &nudge()).unwrap());
    let messages = body.tree().unwrap()["messages"]
        .as_array()
        .expect("messages");
    let roles: Vec<&str> = messages
        .iter()
        .map(|m| m["role"].as_str().expect("role"))
        .collect();
    assert_eq!(roles, ["user", "assistant", "tool", "tool", "system"]);
    assert_eq!(messages[4]["content"], "You are repeating yourself.");
}

/// `raw` prepared for a target of its own format from its bytes (the
/// splice) and from its parse; both must send the same JSON.
fn same_format(format: Format, raw: &str, stream: bool) -> Prepared {
    let mut body = scanned(raw);
    let wants = app_wants_usage(&body);
    let from_bytes =
        prepare(format, &mut body, &target(format), stream, wants, 512).expect("same format");
    let mut parsed = scanned(raw);
    parsed.tree_mut().expect("a JSON object");
    let from_parse =
        prepare(format, &mut parsed, &target(format), stream, wants, 512).expect("same format");
    assert_eq!(sent(&from_bytes), sent(&from_parse), "{raw}");
    assert_eq!(from_bytes.strip_usage_chunk, from_parse.strip_usage_chunk);
    from_bytes
}

#[test]
fn same_format_bodies_keep_everything_but_the_model() {
    let app = json!({
        "model": "claude", "max_tokens": 64, "top_k": 5,
        "system": [{"type": "text", "text": "rules", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "hi"}],
    });
    let p = same_format(Format::Anthropic, &app.to_string(), false);
    let mut expected = app;
    expected["model"] = json!("upstream-id");
    assert_eq!(sent(&p), expected);
}

#[test]
fn same_format_bodies_go_out_as_the_app_wrote_them() {
    // Field order, spacing, escapes and numbers beyond f64 are kept byte for
    // byte; only the model's value changes.
    let raw = r#"{"seed": 123456789012345678901234567890, "model":"gpt-x",
        "messages": [ {"role":"user","content":"caf\u00e9 \"quoted\"\n","x":1.50} ]}"#;
    let p = same_format(Format::OpenAi, raw, false);
    assert_eq!(
        std::str::from_utf8(&p.body).expect("utf-8"),
        r#"{"seed":123456789012345678901234567890,"model":"upstream-id","messages":[ {"role":"user","content":"caf\u00e9 \"quoted\"\n","x":1.50} ]}"#
    );
}

#[test]
fn same_format_bodies_get_a_model_even_without_one_and_only_one() {
    let p = same_format(
        Format::OpenAi,
        r#"{"messages":[{"role":"user","content":"hi"}]}"#,
        false,
    );
    assert_eq!(sent(&p)["model"], json!("upstream-id"));
    let p = same_format(
        Format::OpenAi,
        r#"{"model":"a","messages":[{"role":"user","content":"hi"}],"model":"b"}"#,
        false,
    );
    let body = std::str::from_utf8(&p.body).expect("utf-8");
    assert_eq!(body.matches("\"model\"").count(), 1, "{body}");
    assert_eq!(sent(&p)["model"], json!("upstream-id"));
}

#[test]
fn openai_streams_ask_for_usage_and_strip_it_unless_the_app_asked() {
    let p = same_format(
        Format::OpenAi,
        r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
        true,
    );
    assert!(p.strip_usage_chunk);
    assert_eq!(sent(&p)["stream_options"], json!({"include_usage": true}));

    // The app's other stream options stay; its own usage request is kept.
    let p = same_format(
        Format::OpenAi,
        r#"{"model":"m","stream":true,"stream_options":{"x":1},"messages":[{"role":"user","content":"hi"}]}"#,
        true,
    );
    assert!(p.strip_usage_chunk);
    assert_eq!(
        sent(&p)["stream_options"],
        json!({"x": 1, "include_usage": true})
    );
    let p = same_format(
        Format::OpenAi,
        r#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#,
        true,
    );
    assert!(!p.strip_usage_chunk);
    // Not an object: left as sent (the provider judges it).
    let p = same_format(
        Format::OpenAi,
        r#"{"model":"m","stream":true,"stream_options":null,"messages":[{"role":"user","content":"hi"}]}"#,
        true,
    );
    assert_eq!(sent(&p)["stream_options"], Value::Null);
}

#[test]
fn a_translation_is_built_from_the_parsed_body_even_with_the_bytes_at_hand() {
    let raw = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    let mut body = scanned(raw);
    let p = prepare(
        Format::OpenAi,
        &mut body,
        &target(Format::Anthropic),
        false,
        false,
        512,
    )
    .expect("translates");
    assert_eq!(sent(&p)["max_tokens"], json!(512));
    assert_eq!(
        sent(&p)["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "hi"}]}])
    );
}

#[test]
fn untranslatable_bodies_are_bad_requests_naming_the_field() {
    let mut body = obj(json!({
        "model": "m",
        "messages": [{"role": "tool", "content": "result"}],
    }));
    let Err(e) = prepare(
        Format::OpenAi,
        &mut body,
        &target(Format::Anthropic),
        false,
        false,
        512,
    ) else {
        panic!("a tool message without tool_call_id cannot be translated");
    };
    assert_eq!(e.status(), http::StatusCode::BAD_REQUEST);
    assert!(e.to_string().contains("messages[0].tool_call_id"), "{e}");
}
