//! Turns one message of either wire format into a [`TurnFp`].

use super::normalize::{self, COMMAND, PROSE, RESULT};
use super::{Format, Role, TurnFp, canon, fenced, h, h_seq, outcome, simhash};
use serde_json::Value;
use std::borrow::Cow;

/// Fingerprints one message. Returns the fingerprint and whether the message is an
/// assistant turn whose actions are fenced commands (so a plain user reply is the
/// environment's answer). `None` for system/developer messages and malformed input.
pub(crate) fn fingerprint_one(
    format: Format,
    msg: &Value,
    index: u32,
    fenced_pending: bool,
) -> Option<(TurnFp, bool)> {
    let role = msg.get("role")?.as_str()?;
    let content = msg.get("content").unwrap_or(&Value::Null);
    match role {
        "assistant" | "model" => Some(assistant(format, msg, content, index)),
        "tool" | "function" => {
            let out = result_part(&text_of(content), false);
            Some((tool_result(index, &[out], 0), false))
        }
        "user" => Some((user(content, index, fenced_pending), false)),
        _ => None,
    }
}

/// Whether `msg` is an assistant turn acting through fenced commands only.
pub(crate) fn ends_with_fenced_action(format: Format, msg: &Value) -> bool {
    is_assistant(msg) && native_calls(format, msg).is_empty() && {
        let text = text_of(msg.get("content").unwrap_or(&Value::Null));
        !fenced::split(&text).commands.is_empty()
    }
}

/// Whether `msg` is the model's turn (the roles [`fingerprint_one`] reads as assistant).
pub(crate) fn is_assistant(msg: &Value) -> bool {
    matches!(
        msg.get("role").and_then(Value::as_str),
        Some("assistant" | "model")
    )
}

fn assistant(format: Format, msg: &Value, content: &Value, index: u32) -> (TurnFp, bool) {
    let text = text_of(content);
    let calls = native_calls(format, msg);
    let mut action_hashes = Vec::with_capacity(calls.len().max(1));
    let mut action_name_hashes = Vec::with_capacity(calls.len().max(1));
    let mut buf = String::new();
    // Every action's text, for the near-duplicate hash of the turn's actions.
    let mut all = String::new();
    let prose: Cow<'_, str>;
    let mut fenced_actions = false;
    if calls.is_empty() {
        let split = fenced::split(&text);
        for cmd in &split.commands {
            buf.clear();
            buf.push_str("sh\0");
            normalize::normalize_into(cmd, COMMAND, &mut buf);
            action_hashes.push(h(buf.as_bytes()));
            push_action_text(&buf, &mut all);
            action_name_hashes.push(h(fenced::program(cmd).as_bytes()));
        }
        fenced_actions = !split.commands.is_empty();
        prose = Cow::Owned(split.prose);
    } else {
        for call in &calls {
            buf.clear();
            buf.push_str(call.name);
            buf.push('\0');
            match call.args {
                Args::Json(v) => canon::canonical_into(v, &mut buf),
                Args::Text(s) => canon::canonical_arguments(s, &mut buf),
            }
            action_hashes.push(h(buf.as_bytes()));
            push_action_text(&buf, &mut all);
            action_name_hashes.push(h(call.name.as_bytes()));
        }
        prose = text;
    }
    let norm = normalize::normalize(&prose, PROSE);
    let fp = TurnFp {
        index,
        role: Role::Assistant,
        text_hash: if norm.is_empty() {
            0
        } else {
            h(norm.as_bytes())
        },
        action_hashes,
        action_name_hashes,
        is_error: false,
        result_hash: 0,
        error_hash: 0,
        text_simhash: simhash::simhash(&norm),
        result_simhash: 0,
        result_size: 0,
        action_simhash: simhash::simhash(&all),
        result_shape_hash: 0,
    };
    (fp, fenced_actions)
}

/// Appends one action's canonical text, within the simhash's reading limit.
fn push_action_text(action: &str, all: &mut String) {
    if all.len() < simhash::MAX_CHARS {
        all.push_str(action);
        all.push('\n');
    }
}

/// A user message: tool results (Anthropic), the environment's reply to fenced commands,
/// or a person speaking.
fn user(content: &Value, index: u32, fenced_pending: bool) -> TurnFp {
    let mut results = Vec::new();
    if let Value::Array(blocks) = content {
        for b in blocks {
            if b.get("type").and_then(Value::as_str) == Some("tool_result") {
                let flagged = b.get("is_error").and_then(Value::as_bool).unwrap_or(false);
                let body = text_of(b.get("content").unwrap_or(&Value::Null));
                results.push(result_part(&body, flagged));
            }
        }
    }
    // `tool_result` blocks have no text of their own, so this is the rest of the message.
    let text = text_of(content);
    if !results.is_empty() {
        let norm = normalize::normalize(&text, PROSE);
        let extra = if norm.is_empty() {
            0
        } else {
            h(norm.as_bytes())
        };
        return tool_result(index, &results, extra);
    }
    if fenced_pending {
        return tool_result(index, &[result_part(&text, false)], 0);
    }
    let norm = normalize::normalize(&text, PROSE);
    TurnFp {
        index,
        role: Role::User,
        text_hash: if norm.is_empty() {
            0
        } else {
            h(norm.as_bytes())
        },
        action_hashes: Vec::new(),
        action_name_hashes: Vec::new(),
        is_error: false,
        result_hash: 0,
        error_hash: 0,
        text_simhash: simhash::simhash(&norm),
        result_simhash: 0,
        result_size: 0,
        action_simhash: 0,
        result_shape_hash: 0,
    }
}

/// Characters of a result read for its simhash.
const RESULT_SIMHASH_CHARS: usize = 512;

/// One tool result, already hashed.
struct ResultPart {
    hash: u64,
    is_error: bool,
    error_hash: u64,
    simhash: u64,
    size: usize,
    shape: u64,
}

fn result_part(content: &str, flagged: bool) -> ResultPart {
    let o = outcome::classify(content, flagged);
    let norm = normalize::normalize(content, RESULT);
    // The error flag is part of the result: "ok" and an error with the same text differ.
    let hash = h_seq([h(norm.as_bytes()), u64::from(o.is_error)]);
    // Digits folded: the same failure with another count or amount is the same signature.
    let error_hash = o
        .error_line
        .map(|l| normalize::normalize(l, RESULT))
        .filter(|l| !l.is_empty())
        .map_or(0, |l| shape_hash(&l));
    ResultPart {
        hash,
        is_error: o.is_error,
        error_hash,
        // The opening is what tells two failures apart; all of a long output would cost
        // tens of µs for nothing.
        simhash: simhash::simhash_of_prefix(&norm, RESULT_SIMHASH_CHARS),
        size: norm.len(),
        shape: shape_hash(&norm),
    }
}

/// Hash of `s` with every run of ASCII digits replaced by one `0`.
fn shape_hash(s: &str) -> u64 {
    let mut folded = Vec::with_capacity(s.len());
    let mut in_digits = false;
    for &b in s.as_bytes() {
        if b.is_ascii_digit() {
            if !in_digits {
                folded.push(b'0');
            }
            in_digits = true;
        } else {
            folded.push(b);
            in_digits = false;
        }
    }
    h(&folded)
}

/// Folds one or more results (Anthropic may answer parallel calls in one message) into a
/// single fingerprint.
fn tool_result(index: u32, parts: &[ResultPart], text_hash: u64) -> TurnFp {
    let result_hash = if parts.len() == 1 {
        parts[0].hash
    } else {
        h_seq(parts.iter().map(|p| p.hash))
    };
    let errors: Vec<u64> = parts
        .iter()
        .filter(|p| p.is_error)
        .map(|p| p.error_hash)
        .collect();
    let error_hash = match errors.as_slice() {
        [] => 0,
        [one] => *one,
        many if many.iter().all(|e| *e == 0) => 0,
        many => h_seq(many.iter().copied()),
    };
    // Several results: the largest one stands for the near-duplicate comparison.
    let largest = parts.iter().max_by_key(|p| p.size);
    TurnFp {
        index,
        role: Role::ToolResult,
        text_hash,
        action_hashes: Vec::new(),
        action_name_hashes: Vec::new(),
        is_error: !errors.is_empty(),
        result_hash,
        error_hash,
        text_simhash: 0,
        result_simhash: largest.map_or(0, |p| p.simhash),
        result_size: u32::try_from(parts.iter().map(|p| p.size).sum::<usize>()).unwrap_or(u32::MAX),
        action_simhash: 0,
        result_shape_hash: if parts.len() == 1 {
            parts[0].shape
        } else {
            h_seq(parts.iter().map(|p| p.shape))
        },
    }
}

enum Args<'a> {
    /// Anthropic `input`: already an object.
    Json(&'a Value),
    /// OpenAI `arguments`: a JSON string.
    Text(&'a str),
}

struct Call<'a> {
    name: &'a str,
    args: Args<'a>,
}

static NULL: Value = Value::Null;

fn native_calls(format: Format, msg: &Value) -> Vec<Call<'_>> {
    let mut calls = Vec::new();
    // Both shapes are accepted whatever `format` says: proxies in front of us sometimes
    // translate one half of a conversation and not the other.
    let _ = format;
    if let Some(tc) = msg.get("tool_calls").and_then(Value::as_array) {
        for c in tc {
            let f = c.get("function").unwrap_or(c);
            calls.push(openai_call(f));
        }
    }
    if let Some(f) = msg.get("function_call").filter(|f| f.is_object()) {
        calls.push(openai_call(f));
    }
    if let Some(blocks) = msg.get("content").and_then(Value::as_array) {
        for b in blocks {
            if matches!(
                b.get("type").and_then(Value::as_str),
                Some("tool_use" | "server_tool_use")
            ) {
                calls.push(Call {
                    name: b.get("name").and_then(Value::as_str).unwrap_or(""),
                    args: Args::Json(b.get("input").unwrap_or(&NULL)),
                });
            }
        }
    }
    calls
}

fn openai_call(f: &Value) -> Call<'_> {
    let name = f.get("name").and_then(Value::as_str).unwrap_or("");
    let args = match f.get("arguments") {
        Some(Value::String(s)) => Args::Text(s),
        Some(v) => Args::Json(v),
        None => Args::Json(&NULL),
    };
    Call { name, args }
}

/// Visible text of a content value: a string, or the text blocks of an array (thinking,
/// images and tool calls excluded). Borrowed unless several pieces must be joined.
fn text_of(content: &Value) -> Cow<'_, str> {
    let Value::Array(blocks) = content else {
        return Cow::Borrowed(piece(content).unwrap_or(""));
    };
    let mut pieces = blocks.iter().filter_map(piece);
    let Some(first) = pieces.next() else {
        return Cow::Borrowed("");
    };
    let mut rest = pieces.peekable();
    if rest.peek().is_none() {
        return Cow::Borrowed(first);
    }
    let mut s = String::new();
    for p in std::iter::once(first).chain(rest) {
        push_piece(p, &mut s);
    }
    Cow::Owned(s)
}

/// The text of a string or a `text`-bearing block; other blocks (images, tool calls,
/// thinking, tool results) have none.
fn piece(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => Some(s.as_str()),
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("text" | "input_text" | "output_text") | None => {
                o.get("text").and_then(Value::as_str)
            }
            _ => None,
        },
        _ => None,
    }
}

/// Pieces are joined by a newline, not counting empty ones at the start.
fn push_piece(p: &str, out: &mut String) {
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(p);
}
