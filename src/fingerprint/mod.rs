//! Per-message fingerprints for divergence (loop) detection, computed in the sidecar on
//! the request it already parsed; the control plane's detector consumes them.
//!
//! The sidecar calls [`FingerprintCache::fingerprint_proto`] (same values as
//! [`fingerprint_proto`], computing only messages it has not seen on earlier turns) and puts
//! the result in `RouteRequest.fingerprints`; the control plane converts them back with
//! [`from_proto`]. Only hashes leave the sidecar. Hashes are xxh3 (stable across builds and platforms)
//! because the control plane persists them and compares them across restarts.
//!
//! Role decisions (see `message.rs`):
//! * assistant messages are [`Role::Assistant`]; native tool calls (OpenAI `tool_calls`,
//!   Anthropic `tool_use`) are actions; when there is none, fenced shell blocks in the text
//!   (```` ```bash ````, ```` ```sh ````, or an unlabelled fence) are the actions instead;
//! * OpenAI `role: "tool"` / `"function"` messages and Anthropic user messages carrying
//!   `tool_result` blocks (several results in one message are folded into one fingerprint)
//!   are [`Role::ToolResult`];
//! * a user message that directly follows an assistant message whose actions came from
//!   fenced blocks is the environment's reply, so it is a [`Role::ToolResult`] too;
//! * other user messages are [`Role::User`]; `system` / `developer` messages produce no
//!   fingerprint (their index is simply absent).

mod cache;
mod canon;
mod fenced;
mod message;
mod normalize;
mod outcome;
mod simhash;
#[cfg(test)]
mod tests;

use std::borrow::Cow;

use serde_json::Value;

use crate::pb;

pub use cache::FingerprintCache;

/// Wire shape of the request's `messages` array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OpenAI chat completions: tool calls in `tool_calls`, results as `role: "tool"`.
    OpenAi,
    /// Anthropic messages: `tool_use` / `tool_result` content blocks.
    Anthropic,
}

/// Who produced a fingerprinted message, as the detector sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The model's turn (text and/or actions).
    Assistant,
    /// The environment's reply to the previous assistant turn's actions.
    ToolResult,
    /// A human or simulated user speaking.
    User,
}

impl Role {
    /// The `TurnRole` protobuf value.
    pub fn to_proto(self) -> i32 {
        let r = match self {
            Role::Assistant => pb::TurnRole::Assistant,
            Role::ToolResult => pb::TurnRole::ToolResult,
            Role::User => pb::TurnRole::User,
        };
        r as i32
    }

    /// Parses a `TurnRole` protobuf value; `None` for unspecified or unknown values.
    pub fn from_proto(v: i32) -> Option<Role> {
        match pb::TurnRole::try_from(v).ok()? {
            pb::TurnRole::Assistant => Some(Role::Assistant),
            pb::TurnRole::ToolResult => Some(Role::ToolResult),
            pb::TurnRole::User => Some(Role::User),
            pb::TurnRole::Unspecified => None,
        }
    }
}

/// Fingerprint of one message. Mirrors [`pb::TurnFingerprint`] field by field.
///
/// A hash of `0` always means "absent" (no text, no error signature, text too short for a
/// simhash); real hashes are remapped away from 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TurnFp {
    /// Position of the message in the full `messages` array.
    pub index: u32,
    /// Who produced the message.
    pub role: Role,
    /// Hash of the normalized prose (fenced command blocks removed); 0 when empty.
    pub text_hash: u64,
    /// One hash per action: tool name + canonical arguments, or a fenced command.
    pub action_hashes: Vec<u64>,
    /// One hash per action of the tool name (program name for fenced commands).
    pub action_name_hashes: Vec<u64>,
    /// The result (or any of the results folded into this message) is an error.
    pub is_error: bool,
    /// Hash of the normalized result content; 0 for non-results.
    pub result_hash: u64,
    /// Hash of the normalized error line; 0 when not an error or no signature was found.
    pub error_hash: u64,
    /// 64-bit simhash of the prose for near-duplicate checks; 0 when the text is too short.
    pub text_simhash: u64,
    /// Results: simhash of the opening of the output's words (digits folded); 0 when too
    /// short.
    pub result_simhash: u64,
    /// Results: size of the normalized output in bytes (long outputs are cut to their
    /// head and tail, so at most about 4 KB).
    pub result_size: u32,
    /// Assistant turns: simhash of the action texts; 0 when none or too short.
    pub action_simhash: u64,
    /// Results: hash of the normalized output with digit runs folded; 0 for non-results.
    pub result_shape_hash: u64,
}

/// Default tail window the sidecar fingerprints each turn. One routed turn adds one
/// assistant message and its results (a handful of messages even with parallel tool
/// calls); the rest of the window is overlap the detector uses to skip what it has seen
/// and to realign after context compaction. 16 keeps the cost a few µs per message while
/// tolerating a few skipped turns (e.g. served while the control plane was down). The
/// eval gives identical figures for windows 8 through 40.
pub const DEFAULT_WINDOW: usize = 16;

/// Fingerprints at most the last `window` messages of `messages` (the parsed request's
/// `messages` array, OpenAI or Anthropic shape; Anthropic's top-level `system` is not part
/// of it). `index` is the message's position in the full array. Messages that are not
/// objects or have an unknown role are skipped; this never panics.
pub fn fingerprint(format: Format, messages: &[Value], window: usize) -> Vec<TurnFp> {
    fingerprint_with(None, format, messages, 0, window)
}

/// A message of a history: parsed, or its JSON text as the app wrote it,
/// which the cache keys by its bytes and parses only on a miss.
pub trait Message {
    /// The parsed message (`null` for a text that is not JSON).
    fn value(&self) -> Cow<'_, Value>;
    /// The message's JSON text, when that is what is at hand.
    fn text(&self) -> Option<&str>;
}

impl Message for Value {
    fn value(&self) -> Cow<'_, Value> {
        Cow::Borrowed(self)
    }
    fn text(&self) -> Option<&str> {
        None
    }
}

impl Message for &str {
    fn value(&self) -> Cow<'_, Value> {
        Cow::Owned(serde_json::from_str(self).unwrap_or(Value::Null))
    }
    fn text(&self) -> Option<&str> {
        Some(self)
    }
}

/// [`fingerprint`], through `cache` when there is one: the cache only skips work, the
/// result is the same.
/// `messages` are the history from index `offset` on: the whole history, or
/// its last `window + 1` messages (the window and the one it looks back at).
fn fingerprint_with<M: Message>(
    cache: Option<&FingerprintCache>,
    format: Format,
    messages: &[M],
    offset: usize,
    window: usize,
) -> Vec<TurnFp> {
    let start = messages.len().saturating_sub(window);
    let mut out = Vec::with_capacity(messages.len() - start);
    // Scratch for cache keys, reused by every message of the turn.
    let mut buf = Vec::new();
    // Whether the environment's reply is expected as a plain user message depends on the
    // message just before the window, so look one message back.
    let mut fenced_pending = start
        .checked_sub(1)
        .and_then(|i| messages.get(i))
        .is_some_and(|m| match cache {
            Some(c) => c.ends_with_fenced_action(format, m, &mut buf),
            None => message::ends_with_fenced_action(format, &m.value()),
        });
    for (i, msg) in messages.iter().enumerate().skip(start) {
        let index = u32::try_from(offset + i).unwrap_or(u32::MAX);
        let one = match cache {
            Some(c) => c.fingerprint_one(format, msg, index, fenced_pending, &mut buf),
            None => message::fingerprint_one(format, &msg.value(), index, fenced_pending),
        };
        match one {
            Some((fp, fenced)) => {
                fenced_pending = fenced;
                out.push(fp);
            }
            None => fenced_pending = false,
        }
    }
    out
}

/// [`fingerprint`] converted for `RouteRequest.fingerprints`: what the sidecar sends.
pub fn fingerprint_proto(
    format: Format,
    messages: &[Value],
    window: usize,
) -> Vec<pb::TurnFingerprint> {
    into_proto(fingerprint(format, messages, window))
}

/// Converts fingerprints to their protobuf form.
pub fn to_proto(fps: &[TurnFp]) -> Vec<pb::TurnFingerprint> {
    fps.iter().cloned().map(TurnFp::into_proto).collect()
}

/// [`to_proto`] without copying the action lists.
fn into_proto(fps: Vec<TurnFp>) -> Vec<pb::TurnFingerprint> {
    fps.into_iter().map(TurnFp::into_proto).collect()
}

impl TurnFp {
    fn into_proto(self) -> pb::TurnFingerprint {
        pb::TurnFingerprint {
            index: self.index,
            role: self.role.to_proto(),
            text_hash: self.text_hash,
            action_hashes: self.action_hashes,
            action_name_hashes: self.action_name_hashes,
            is_error: self.is_error,
            result_hash: self.result_hash,
            error_hash: self.error_hash,
            text_simhash: self.text_simhash,
            result_simhash: self.result_simhash,
            result_size: self.result_size,
            action_simhash: self.action_simhash,
            result_shape_hash: self.result_shape_hash,
        }
    }
}

/// Most fingerprints accepted from one request, and most actions per fingerprint: bounds
/// the control plane's work whatever a caller sends.
pub const MAX_FINGERPRINTS: usize = 256;
const MAX_ACTIONS: usize = 64;

/// Converts fingerprints received in a `RouteRequest`. Entries with an unknown role are
/// dropped, the list is cut to its last [`MAX_FINGERPRINTS`] entries and each action list
/// to [`MAX_ACTIONS`], so a hostile or buggy caller cannot make the detector slow.
pub fn from_proto(fps: &[pb::TurnFingerprint]) -> Vec<TurnFp> {
    let start = fps.len().saturating_sub(MAX_FINGERPRINTS);
    fps[start..]
        .iter()
        .filter_map(|f| {
            let cap = |v: &[u64]| v[..v.len().min(MAX_ACTIONS)].to_vec();
            Some(TurnFp {
                index: f.index,
                role: Role::from_proto(f.role)?,
                text_hash: f.text_hash,
                action_hashes: cap(&f.action_hashes),
                action_name_hashes: cap(&f.action_name_hashes),
                is_error: f.is_error,
                result_hash: f.result_hash,
                error_hash: f.error_hash,
                text_simhash: f.text_simhash,
                result_simhash: f.result_simhash,
                result_size: f.result_size,
                action_simhash: f.action_simhash,
                result_shape_hash: f.result_shape_hash,
            })
        })
        .collect()
}

/// Hashes bytes, reserving 0 for "absent".
pub(crate) fn h(bytes: &[u8]) -> u64 {
    nonzero(xxhash_rust::xxh3::xxh3_64(bytes))
}

/// Folds a sequence of hashes into one (order matters).
pub(crate) fn h_seq(hashes: impl IntoIterator<Item = u64>) -> u64 {
    // Up to 8 hashes (nearly always: a result and its error flag) stay on the stack.
    let mut small = [0u8; 64];
    let mut len = 0;
    let mut spilled: Vec<u8> = Vec::new();
    for x in hashes {
        if len + 8 <= small.len() {
            small[len..len + 8].copy_from_slice(&x.to_le_bytes());
            len += 8;
        } else {
            if spilled.is_empty() {
                spilled.extend_from_slice(&small[..len]);
            }
            spilled.extend_from_slice(&x.to_le_bytes());
        }
    }
    let bytes = if spilled.is_empty() {
        &small[..len]
    } else {
        &spilled[..]
    };
    if bytes.is_empty() { 0 } else { h(bytes) }
}

fn nonzero(x: u64) -> u64 {
    if x == 0 { 1 } else { x }
}
