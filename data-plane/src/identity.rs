//! Which conversation a request belongs to. The app's `X-Conversation-ID`
//! wins; else a coding-agent harness's own session id (Claude Code's header
//! or `metadata.user_id`, Codex-style session headers); else a fingerprint of
//! the conversation's opening (system prompt + first user message), which
//! every later turn of the same conversation repeats.

pub mod runs;

use http::HeaderMap;
use keel::pb::SessionSource;
use serde_json::Value;

use crate::{
    chat_body::ChatView,
    facts::{BodyFacts, Role},
};

/// The conversation a request belongs to, and how it was recognised.
pub struct Identity {
    pub conversation_id: String,
    pub source: SessionSource,
}

impl Identity {
    /// The `X-Keel-Session-Source` value.
    pub fn header_value(source: SessionSource) -> Option<&'static str> {
        match source {
            SessionSource::Header => Some("header"),
            SessionSource::Harness => Some("harness"),
            SessionSource::Fingerprint => Some("fingerprint"),
            SessionSource::None => None,
        }
    }
}

/// Session headers sent by coding-agent harnesses, most specific first.
const HARNESS_HEADERS: &[&str] = &[
    "x-claude-code-session-id",
    "session-id",
    "session_id",
    "x-session-id",
];

/// Identifies the conversation of a parsed chat request.
pub fn identify(
    explicit: Option<String>,
    headers: &HeaderMap,
    body: &impl ChatView,
    facts: &BodyFacts,
) -> Identity {
    if let Some(id) = explicit {
        return Identity {
            conversation_id: id,
            source: SessionSource::Header,
        };
    }
    if let Some(id) = harness_id(headers, body) {
        return Identity {
            conversation_id: id,
            source: SessionSource::Harness,
        };
    }
    match opening_fingerprint(body, facts) {
        Some(fp) => Identity {
            conversation_id: fp,
            source: SessionSource::Fingerprint,
        },
        None => Identity {
            conversation_id: String::new(),
            source: SessionSource::None,
        },
    }
}

/// `id` trimmed, when it can name a conversation (visible ASCII, not too long).
pub(crate) fn usable(id: &str) -> Option<String> {
    let id = id.trim();
    let ok = !id.is_empty()
        && id.len() <= keel::MAX_CONVERSATION_ID_BYTES
        && id.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| id.to_owned())
}

/// The first usable session header a harness sent.
pub(crate) fn harness_header(headers: &HeaderMap) -> Option<String> {
    HARNESS_HEADERS.iter().find_map(|name| {
        headers
            .get(*name)
            .and_then(|v| v.to_str().ok())
            .and_then(usable)
    })
}

fn harness_id(headers: &HeaderMap, body: &impl ChatView) -> Option<String> {
    if let Some(id) = harness_header(headers) {
        return Some(id);
    }
    let metadata = body.value("metadata")?;
    let user_id = metadata.get("user_id")?.as_str()?;
    // Current Claude Code: a JSON object with `session_id`.
    if let Ok(Value::Object(o)) = serde_json::from_str::<Value>(user_id)
        && let Some(id) = o.get("session_id").and_then(Value::as_str).and_then(usable)
    {
        return Some(id);
    }
    // Older Claude Code: `user_<hash>_account_<id>_session_<uuid>`.
    user_id
        .rsplit_once("_session_")
        .and_then(|(_, id)| usable(id))
}

/// `fp-` + 128-bit hash of the first system text and the first user message
/// (found by the messages' facts; only those two are parsed).
fn opening_fingerprint(body: &impl ChatView, facts: &BodyFacts) -> Option<String> {
    let first = |roles: &[Role]| {
        let i = facts
            .messages
            .iter()
            .position(|m| m.role.is_some_and(|r| roles.contains(&r)))?;
        body.message(i)
    };
    let first_user = first(&[Role::User])?;
    let top_system = body.value("system");
    let system_message = match top_system {
        Some(_) => None,
        None => first(&[Role::System, Role::Developer]),
    };
    let system = top_system
        .as_deref()
        .or_else(|| system_message.as_deref()?.get("content"));
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    // Text only, so the same opening hashes alike in either API's shape
    // and whatever cache markers the harness adds.
    if let Some(s) = system {
        hash_text(s, &mut hasher);
    }
    hasher.update(b"\x00user\x00");
    hash_text(first_user.get("content")?, &mut hasher);
    Some(format!("fp-{:032x}", hasher.digest128()))
}

pub(crate) fn hash_text(v: &Value, hasher: &mut xxhash_rust::xxh3::Xxh3) {
    match v {
        Value::String(s) => hasher.update(s.as_bytes()),
        Value::Array(parts) => parts.iter().for_each(|p| hash_text(p, hasher)),
        Value::Object(o) => {
            if let Some(t) = o.get("text") {
                hash_text(t, hasher);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests;
