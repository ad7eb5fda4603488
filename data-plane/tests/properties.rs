//! Property tests of the sidecar's request work on arbitrary input: parsing,
//! translation both ways (requests and streams) and fingerprinting never
//! panic, stay within a bound of their input's size, and refuse in the
//! caller's error shape; a scanned chat body reads as its parse. Cases per
//! property: `PROPTEST_CASES` (default 256).

use bytes::Bytes;
use keel::fingerprint;
use keel_data_plane::{
    chat_body::ChatView,
    facts::{BodyFacts, FactsCache},
    features,
    format::Format,
    inbound::parse_chat,
    translate::{
        anthropic_stream_to_openai, anthropic_to_openai_request, openai_stream_to_anthropic,
        openai_to_anthropic_request,
    },
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn cases() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig::with_cases(cases)
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e9f64..1e9).prop_map(Value::from),
        "[ -~]{0,24}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            proptest::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A content block of either API, often well-formed, sometimes not.
fn block() -> impl Strategy<Value = Value> {
    let text = "[ -~]{0,40}";
    prop_oneof![
        text.prop_map(|t| json!({"type": "text", "text": t})),
        (text, any_json()).prop_map(|(n, a)| json!({"type": "tool_use", "id": "tu_1", "name": n, "input": a})),
        (text, any_json()).prop_map(|(t, c)| json!({"type": "tool_result", "tool_use_id": t, "content": c})),
        text.prop_map(|u| json!({"type": "image_url", "image_url": {"url": u}})),
        text.prop_map(|d| json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": d}})),
        any_json(),
    ]
}

/// A message of either API: a known role, content as text, blocks or anything.
fn message() -> impl Strategy<Value = Value> {
    let role = prop_oneof![
        Just("system"),
        Just("developer"),
        Just("user"),
        Just("assistant"),
        Just("tool"),
        Just("bogus")
    ];
    let content = prop_oneof![
        "[ -~]{0,60}".prop_map(Value::from),
        proptest::collection::vec(block(), 0..4).prop_map(Value::from),
        any_json(),
    ];
    let tool_calls = proptest::option::of(proptest::collection::vec(
        ("[a-z_]{1,10}", "[ -~]{0,30}").prop_map(|(n, a)| {
            json!({"id": "call_1", "type": "function", "function": {"name": n, "arguments": a}})
        }),
        0..3,
    ));
    (role, content, tool_calls).prop_map(|(role, content, calls)| {
        let mut m = json!({"role": role, "content": content});
        if let Some(calls) = calls {
            m["tool_calls"] = Value::from(calls);
            m["tool_call_id"] = Value::from("call_1");
        }
        m
    })
}

/// A chat body of either API with arbitrary extra fields.
fn chat_body() -> impl Strategy<Value = Map<String, Value>> {
    (
        proptest::collection::vec(message(), 0..8),
        proptest::option::of(any_json()),
        proptest::option::of(0u64..100_000),
        any::<bool>(),
        proptest::collection::btree_map("[a-z_]{1,12}", any_json(), 0..4),
    )
        .prop_map(|(messages, system, max_tokens, stream, extra)| {
            let mut body: Map<String, Value> = extra.into_iter().collect();
            body.insert("model".into(), "auto".into());
            body.insert("messages".into(), messages.into());
            body.insert("stream".into(), stream.into());
            if let Some(s) = system {
                body.insert("system".into(), s);
            }
            if let Some(n) = max_tokens {
                body.insert("max_tokens".into(), n.into());
            }
            body
        })
}

fn format() -> impl Strategy<Value = Format> {
    prop_oneof![Just(Format::OpenAi), Just(Format::Anthropic)]
}

/// The error body a refusal carries, checked for the caller's shape.
fn assert_error_shape(format: Format, body: &[u8]) {
    let v: Value = serde_json::from_slice(body).expect("error body is JSON");
    assert!(v["error"]["message"].is_string(), "{v}");
    if format == Format::Anthropic {
        assert_eq!(v["type"], "error", "{v}");
    }
}

fn size(v: &impl serde::Serialize) -> usize {
    serde_json::to_vec(v).map_or(0, |b| b.len())
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn parsing_any_bytes_answers_or_refuses_in_shape(
        f in format(),
        raw in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..256),
            chat_body().prop_map(|b| serde_json::to_vec(&b).unwrap()),
        ],
    ) {
        match parse_chat(f, Bytes::from(raw), &FactsCache::default()) {
            Ok(chat) => prop_assert!(!chat.model.is_empty()),
            Err(e) => {
                let status = e.status().as_u16();
                prop_assert!((400..500).contains(&status), "{status}");
                let response = e.into_response(f);
                let body = futures_body(response);
                assert_error_shape(f, &body);
            }
        }
    }

    #[test]
    fn requests_translate_both_ways_within_bounds(body in chat_body()) {
        let input = size(&body);
        for (target, out) in [
            (Format::Anthropic, openai_to_anthropic_request(&body, "up-model", 4096)),
            (Format::OpenAi, anthropic_to_openai_request(&body, "up-model", true)),
        ] {
            match out {
                Ok(translated) => prop_assert!(size(&translated) <= 4 * input + 4096, "{target:?}"),
                Err(e) => {
                    // The refusal goes to the caller, whose format is the other one.
                    let caller = if target == Format::Anthropic { Format::OpenAi } else { Format::Anthropic };
                    prop_assert!(e.to_string().len() <= 2 * input + 256);
                    let response = keel_data_plane::error::ApiError::from(e).into_response(caller);
                    prop_assert_eq!(response.status().as_u16(), 400);
                    assert_error_shape(caller, &futures_body(response));
                }
            }
        }
    }

    #[test]
    fn streams_translate_both_ways_within_bounds(
        events in proptest::collection::vec(
            (
                prop_oneof![Just(""), Just("message_start"), Just("content_block_start"),
                    Just("content_block_delta"), Just("content_block_stop"), Just("message_delta"),
                    Just("message_stop"), Just("error"), Just("ping")],
                prop_oneof![
                    any_json().prop_map(|v| v.to_string()),
                    Just("[DONE]".to_owned()),
                    "[ -~]{0,40}",
                ],
            ),
            0..24,
        ),
        fail in any::<bool>(),
    ) {
        let input: usize = events.iter().map(|(e, d)| e.len() + d.len()).sum();
        for mut t in [anthropic_stream_to_openai("m", true), openai_stream_to_anthropic("m")] {
            let mut out = Vec::new();
            for (event, data) in &events {
                t.push(event, data, &mut out);
            }
            if fail { t.fail("upstream broke", &mut out) } else { t.finish(&mut out) }
            prop_assert!(out.len() <= 8 * input + 8192, "{} bytes out of {input}", out.len());
        }
    }

    #[test]
    fn a_scanned_body_reads_as_its_parse(body in chat_body(), extra in any_json()) {
        // Messages that are not objects too: they are refused alike.
        let mut body = body;
        if let Some(Value::Array(m)) = body.get_mut("messages") {
            m.push(extra);
        }
        let raw = Bytes::from(serde_json::to_vec(&body).unwrap());
        let cache = FactsCache::default();
        // Twice: the second time every part's facts come from the cache.
        for _ in 0..2 {
            let scanned = parse_chat(Format::OpenAi, raw.clone(), &cache);
            let valid = body["messages"].as_array().unwrap().iter().all(|m| m.get("role").is_some_and(Value::is_string));
            prop_assert_eq!(scanned.is_ok(), valid && body.message_count() > 0);
            let Ok(chat) = scanned else { continue };
            prop_assert_eq!(&chat.facts, &BodyFacts::of_tree(&body));
            prop_assert_eq!(
                features::from_facts(&chat.facts, &chat.body, chat.stream),
                features::compute(&body, chat.stream)
            );
            prop_assert_eq!(chat.body.message_count(), body.message_count());
            for i in 0..body.message_count() {
                prop_assert_eq!(chat.body.message(i), body.message(i));
            }
        }
    }

    #[test]
    fn fingerprints_are_bounded_and_survive_the_wire(
        messages in proptest::collection::vec(message(), 0..24),
        window in 0usize..32,
        anthropic in any::<bool>(),
    ) {
        let f = if anthropic { fingerprint::Format::Anthropic } else { fingerprint::Format::OpenAi };
        let fps = fingerprint::fingerprint(f, &messages, window);
        prop_assert!(fps.len() <= window.min(messages.len()));
        prop_assert_eq!(fingerprint::from_proto(&fingerprint::to_proto(&fps)), fps);
    }
}

/// The body of a full (non-streamed) response.
fn futures_body(response: http::Response<keel_data_plane::body::Body>) -> Vec<u8> {
    use http_body_util::BodyExt;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(response.into_body().collect())
        .map(|c| c.to_bytes().to_vec())
        .unwrap_or_default()
}
