use http::HeaderMap;
use keel::pb::SessionSource;
use serde_json::{Map, Value, json};

use super::Identity;
use crate::{
    chat_body::ChatBody,
    facts::{BodyFacts, FactsCache},
};

fn body(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

/// The identity of `body`, parsed; the same body scanned must get the same.
fn identify(explicit: Option<String>, headers: &HeaderMap, body: &Map<String, Value>) -> Identity {
    let parsed = super::identify(explicit.clone(), headers, body, &BodyFacts::of_tree(body));
    let bytes = bytes::Bytes::from(serde_json::to_vec(body).unwrap());
    let scanned = ChatBody::scan(bytes).unwrap();
    let facts = BodyFacts::of_scanned(&scanned, &FactsCache::default());
    let other = super::identify(explicit, headers, &scanned, &facts);
    assert_eq!(
        (&parsed.conversation_id, parsed.source),
        (&other.conversation_id, other.source)
    );
    parsed
}

#[test]
fn the_apps_header_wins() {
    let mut h = HeaderMap::new();
    h.insert("x-claude-code-session-id", "cc-1".parse().unwrap());
    let id = identify(Some("app-1".into()), &h, &body(json!({"messages": []})));
    assert_eq!(id.conversation_id, "app-1");
    assert_eq!(id.source, SessionSource::Header);
}

#[test]
fn harness_header_and_metadata_identify_the_session() {
    let mut h = HeaderMap::new();
    h.insert("x-claude-code-session-id", "6f1c2d3e-aaaa".parse().unwrap());
    let id = identify(
        None,
        &h,
        &body(json!({"messages": [{"role": "user", "content": "hi"}]})),
    );
    assert_eq!(
        (id.conversation_id.as_str(), id.source),
        ("6f1c2d3e-aaaa", SessionSource::Harness)
    );

    let json_meta = json!({"metadata": {"user_id": "{\"device_id\":\"d\",\"account_uuid\":\"\",\"session_id\":\"54c1eb09\"}"}, "messages": []});
    let id = identify(None, &HeaderMap::new(), &body(json_meta));
    assert_eq!(
        (id.conversation_id.as_str(), id.source),
        ("54c1eb09", SessionSource::Harness)
    );

    let legacy =
        json!({"metadata": {"user_id": "user_abc_account_x_session_57a121ec"}, "messages": []});
    let id = identify(None, &HeaderMap::new(), &body(legacy));
    assert_eq!(id.conversation_id, "57a121ec");
}

#[test]
fn the_opening_fingerprint_is_stable_across_turns_and_formats() {
    let turn1 = json!({"messages": [
        {"role": "system", "content": "You are a coder."},
        {"role": "user", "content": "Fix the build"}
    ]});
    let turn3 = json!({"messages": [
        {"role": "system", "content": "You are a coder."},
        {"role": "user", "content": "Fix the build"},
        {"role": "assistant", "content": "Looking."},
        {"role": "user", "content": "And the tests"}
    ]});
    let anthropic = json!({"system": [{"type": "text", "text": "You are a coder.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Fix the build"}]}]});
    let other = json!({"messages": [{"role": "system", "content": "You are a coder."}, {"role": "user", "content": "Write docs"}]});
    let h = HeaderMap::new();
    let a = identify(None, &h, &body(turn1));
    let b = identify(None, &h, &body(turn3));
    let c = identify(None, &h, &body(anthropic));
    let d = identify(None, &h, &body(other));
    assert_eq!(a.source, SessionSource::Fingerprint);
    assert!(a.conversation_id.starts_with("fp-"));
    assert_eq!(a.conversation_id, b.conversation_id);
    assert_eq!(a.conversation_id, c.conversation_id);
    assert_ne!(a.conversation_id, d.conversation_id);
}

#[test]
fn unusable_harness_values_are_ignored() {
    let mut h = HeaderMap::new();
    h.insert("x-claude-code-session-id", "x".repeat(300).parse().unwrap());
    let id = identify(
        None,
        &h,
        &body(json!({"messages": [{"role": "user", "content": "hi"}]})),
    );
    assert_eq!(id.source, SessionSource::Fingerprint);
}
