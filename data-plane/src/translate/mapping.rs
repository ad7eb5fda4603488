//! Small correspondences shared by responses and streams: ids, reasons, timestamps.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// OpenAI `finish_reason` for an Anthropic `stop_reason`.
pub(crate) fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        // end_turn, stop_sequence, pause_turn and anything new end the turn normally.
        _ => "stop",
    }
}

/// Anthropic `stop_reason` for an OpenAI `finish_reason`.
pub(crate) fn stop_reason(finish_reason: Option<&str>) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

/// A provider's finish reason as it sent it, for traces
/// (`gen_ai.response.finish_reasons`): the reasons OpenAI, Anthropic and the
/// Responses API define, as `'static` strings so that nothing is allocated;
/// a reason none of them defines is `"other"`.
pub fn reason_as_sent(reason: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        // OpenAI Chat Completions.
        "stop",
        "length",
        "tool_calls",
        "content_filter",
        "function_call",
        // Anthropic Messages.
        "end_turn",
        "max_tokens",
        "stop_sequence",
        "tool_use",
        "pause_turn",
        "refusal",
        "model_context_window_exceeded",
        // Responses API: `status`, or `incomplete_details.reason`.
        "completed",
        "max_output_tokens",
    ];
    KNOWN
        .iter()
        .find(|k| **k == reason)
        .copied()
        .unwrap_or("other")
}

/// The finish reason of a whole answer in the provider's `format`: OpenAI's
/// first choice's `finish_reason`, Anthropic's `stop_reason`.
pub fn finish_reason_of(format: super::Format, answer: &serde_json::Value) -> Option<&'static str> {
    let reason = match format {
        super::Format::OpenAi => answer["choices"][0]["finish_reason"].as_str(),
        super::Format::Anthropic => answer["stop_reason"].as_str(),
    };
    reason.map(reason_as_sent)
}

/// The finish reason of a Responses object: why it is incomplete, else its
/// status (`"completed"`).
pub fn responses_finish_reason(response: &serde_json::Value) -> Option<&'static str> {
    response["incomplete_details"]["reason"]
        .as_str()
        .or(response["status"].as_str())
        .map(reason_as_sent)
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Unique suffix for ids we must invent (upstream sent none).
pub(crate) fn fresh_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("keel{nanos:x}{n:x}")
}

/// Swaps the upstream id's prefix for ours so the caller sees an id of its own API's shape
/// that still traces back to the upstream one.
fn rebrand(upstream: Option<&str>, strip: &str, prefix: &str) -> String {
    match upstream.filter(|s| !s.is_empty()) {
        Some(id) => format!("{prefix}{}", id.strip_prefix(strip).unwrap_or(id)),
        None => format!("{prefix}{}", fresh_suffix()),
    }
}

/// `chatcmpl-…` id from an Anthropic `msg_…` id.
pub(crate) fn chat_id(upstream: Option<&str>) -> String {
    rebrand(upstream, "msg_", "chatcmpl-")
}

/// `msg_…` id from an OpenAI `chatcmpl-…` id.
pub(crate) fn message_id(upstream: Option<&str>) -> String {
    rebrand(upstream, "chatcmpl-", "msg_")
}

/// Tool-use id for a streamed OpenAI tool call that arrived without one.
pub(crate) fn tool_use_id() -> String {
    format!("toolu_{}", fresh_suffix())
}
