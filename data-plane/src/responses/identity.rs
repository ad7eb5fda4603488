//! Which conversation a Responses request belongs to: `X-Conversation-ID`; a
//! harness's session header (Codex sends `session-id`); the body's `conversation`;
//! the conversation of `previous_response_id`; `prompt_cache_key`; else a
//! fingerprint of the opening (`instructions` or the first system/developer
//! message, and the first user message).

use http::HeaderMap;
use keel::pb::SessionSource;
use serde_json::{Map, Value};

use super::chains::Chains;
use crate::identity::{Identity, harness_header, hash_text, usable};

/// Identifies the conversation of a parsed Responses request.
pub fn identify(
    explicit: Option<String>,
    headers: &HeaderMap,
    body: &Map<String, Value>,
    chains: &Chains,
) -> Identity {
    let found = |id: String, source: SessionSource| Identity {
        conversation_id: id,
        source,
    };
    if let Some(id) = explicit {
        return found(id, SessionSource::Header);
    }
    if let Some(id) = harness_header(headers) {
        return found(id, SessionSource::Harness);
    }
    // `conversation` is the id itself or `{"id": …}`.
    let conversation = body.get("conversation").and_then(|c| match c {
        Value::String(s) => Some(s.as_str()),
        Value::Object(o) => o.get("id").and_then(Value::as_str),
        _ => None,
    });
    if let Some(id) = conversation.and_then(usable) {
        return found(id, SessionSource::Header);
    }
    if let Some((id, source)) = body
        .get("previous_response_id")
        .and_then(Value::as_str)
        .and_then(|prev| chains.conversation_of(prev))
    {
        return found(id, source);
    }
    if let Some(id) = body
        .get("prompt_cache_key")
        .and_then(Value::as_str)
        .and_then(usable)
    {
        return found(id, SessionSource::Harness);
    }
    match opening_fingerprint(body) {
        Some(fp) => found(fp, SessionSource::Fingerprint),
        None => found(String::new(), SessionSource::None),
    }
}

fn role(item: &Value) -> Option<&str> {
    let kind = item
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message");
    (kind == "message")
        .then(|| item.get("role").and_then(Value::as_str))
        .flatten()
}

/// `fp-` + 128-bit hash of the opening's system text and first user message. A request
/// that continues through `previous_response_id` has no opening of its own: none.
fn opening_fingerprint(body: &Map<String, Value>) -> Option<String> {
    if body
        .get("previous_response_id")
        .is_some_and(Value::is_string)
    {
        return None;
    }
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(b"responses\x00");
    let items = match body.get("input")? {
        Value::String(s) => {
            if let Some(i) = body.get("instructions") {
                hash_text(i, &mut hasher);
            }
            hasher.update(b"\x00user\x00");
            hasher.update(s.as_bytes());
            return Some(format!("fp-{:032x}", hasher.digest128()));
        }
        Value::Array(items) => items,
        _ => return None,
    };
    let first_user = items.iter().find(|i| role(i) == Some("user"))?;
    let system = body.get("instructions").or_else(|| {
        items
            .iter()
            .find(|i| matches!(role(i), Some("system" | "developer")))
            .and_then(|i| i.get("content"))
    });
    if let Some(s) = system {
        hash_text(s, &mut hasher);
    }
    hasher.update(b"\x00user\x00");
    hash_text(first_user.get("content")?, &mut hasher);
    Some(format!("fp-{:032x}", hasher.digest128()))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use serde_json::json;

    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn the_session_header_wins_then_conversation_then_the_chain_then_the_cache_key() {
        let chains = Chains::default();
        chains.remember("resp_1", &"conv-chain".into(), SessionSource::Harness);
        let mut headers = HeaderMap::new();
        let b = body(json!({
            "input": "hi", "conversation": {"id": "conv_abc"},
            "previous_response_id": "resp_1", "prompt_cache_key": "pck",
        }));
        headers.insert("session-id", HeaderValue::from_static("sess-1"));
        assert_eq!(
            identify(None, &headers, &b, &chains).conversation_id,
            "sess-1"
        );
        let none = HeaderMap::new();
        let id = identify(None, &none, &b, &chains);
        assert_eq!(
            (id.conversation_id.as_str(), id.source),
            ("conv_abc", SessionSource::Header)
        );
        let b = body(
            json!({"input": "hi", "previous_response_id": "resp_1", "prompt_cache_key": "pck"}),
        );
        assert_eq!(
            identify(None, &none, &b, &chains).conversation_id,
            "conv-chain"
        );
        let b = body(
            json!({"input": "hi", "previous_response_id": "resp_x", "prompt_cache_key": "pck"}),
        );
        assert_eq!(identify(None, &none, &b, &chains).conversation_id, "pck");
    }

    #[test]
    fn the_opening_fingerprint_ignores_later_items() {
        let chains = Chains::default();
        let none = HeaderMap::new();
        let first = body(json!({"instructions": "be brief", "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "task"}]}]}));
        let later = body(json!({"instructions": "be brief", "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "task"}]},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": "ok"}]}));
        let a = identify(None, &none, &first, &chains);
        assert_eq!(a.source, SessionSource::Fingerprint);
        assert_eq!(
            a.conversation_id,
            identify(None, &none, &later, &chains).conversation_id
        );
        let other = body(json!({"instructions": "be brief", "input": "another task"}));
        assert_ne!(
            a.conversation_id,
            identify(None, &none, &other, &chains).conversation_id
        );
    }
}
