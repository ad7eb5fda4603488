//! Streaming translation, one upstream SSE event at a time.
//!
//! Each translator writes complete SSE frames for the caller as soon as it has them; it
//! holds back only what the target format orders later (OpenAI reports usage after the
//! finish reason, Anthropic wants it in `message_delta`).

mod from_anthropic;
mod from_openai;
mod passthrough;

use serde_json::Value;

use super::{Format, Usage};

/// Rewrites an upstream event stream into the caller's format.
pub trait StreamTranslator: Send {
    /// Feeds one upstream event; `event` is the SSE `event:` field ("" if none) and `data`
    /// its joined `data:` lines. Frames for the caller are appended to `out`.
    fn push(&mut self, event: &str, data: &str, out: &mut Vec<u8>);
    /// The upstream ended cleanly: closes the caller's stream properly. If the upstream never
    /// signalled the end of the message, the caller gets an error event instead, so that a
    /// truncated answer is never presented as complete.
    fn finish(&mut self, out: &mut Vec<u8>);
    /// The upstream broke mid-stream: emits an error event in the caller's format and ends.
    /// Nothing is written after the stream has already ended.
    fn fail(&mut self, message: &str, out: &mut Vec<u8>);
    /// Usage seen so far (final once `completed`).
    fn usage(&self) -> Usage;
    /// Whether the upstream's normal end was seen.
    fn completed(&self) -> bool;
    /// The provider's finish reason as sent ([`super::reason_as_sent`]),
    /// once seen.
    fn finish_reason(&self) -> Option<&'static str>;
}

/// Anthropic upstream stream → OpenAI `chat.completion.chunk` stream. With
/// `include_usage_chunk`, a last chunk with empty `choices` carries `usage` before `[DONE]`.
pub fn anthropic_stream_to_openai(
    client_model: &str,
    include_usage_chunk: bool,
) -> Box<dyn StreamTranslator> {
    Box::new(from_anthropic::AnthropicToOpenAi::new(
        client_model,
        include_usage_chunk,
    ))
}

/// OpenAI upstream chunk stream → Anthropic Messages event stream.
pub fn openai_stream_to_anthropic(client_model: &str) -> Box<dyn StreamTranslator> {
    Box::new(from_openai::OpenAiToAnthropic::new(client_model))
}

/// A same-format stream: frames reach the caller as the provider sent them while usage and
/// the normal end are watched. With `strip_usage_chunk` (OpenAI only), the usage-only chunk
/// Keel asked for on the app's behalf is dropped.
pub fn passthrough(format: Format, strip_usage_chunk: bool) -> Box<dyn StreamTranslator> {
    Box::new(passthrough::Passthrough::new(format, strip_usage_chunk))
}

/// Appends one SSE frame as received; multi-line data keeps one `data:` line per line.
pub(super) fn write_frame(out: &mut Vec<u8>, event: &str, data: &str) {
    write_event_line(out, event);
    for line in data.split('\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
}

fn write_event_line(out: &mut Vec<u8>, event: &str) {
    if !event.is_empty() {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(event.as_bytes());
        out.push(b'\n');
    }
}

/// Appends `data: <json>\n\n`. Compact JSON never contains a raw newline, so one line is safe.
fn write_data(out: &mut Vec<u8>, v: &Value) {
    write_event(out, "", v);
}

/// Appends `event: <name>\ndata: <json>\n\n`, the framing Anthropic (and the Responses
/// API) use for every event.
pub(super) fn write_event(out: &mut Vec<u8>, name: &str, v: &Value) {
    // Serializing a `Value` into memory cannot fail; skip the frame rather than panic.
    if let Ok(json) = serde_json::to_vec(v) {
        write_event_line(out, name);
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&json);
        out.extend_from_slice(b"\n\n");
    }
}

fn write_done(out: &mut Vec<u8>) {
    out.extend_from_slice(b"data: [DONE]\n\n");
}

/// Mid-stream error for an OpenAI caller. No `[DONE]` follows: the SDKs raise on the
/// `error` key, and a missing `[DONE]` tells naive clients the answer is incomplete.
fn write_openai_error(out: &mut Vec<u8>, kind: &str, message: &str) {
    let v = super::errors::openai_error_value(kind, message, Value::Null, Value::Null);
    write_data(out, &v);
}

/// Mid-stream error for an Anthropic caller, as Anthropic itself sends it.
fn write_anthropic_error(out: &mut Vec<u8>, kind: &str, message: &str) {
    write_event(
        out,
        "error",
        &super::errors::anthropic_error_value(kind, message),
    );
}

/// The event kind: the JSON `type` when present (both Anthropic and our tests set it),
/// else the SSE `event:` name.
pub(super) fn event_kind<'a>(event: &'a str, v: &'a Value) -> &'a str {
    v.get("type").and_then(Value::as_str).unwrap_or(event)
}

#[cfg(test)]
mod tests;
