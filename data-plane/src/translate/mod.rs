//! Wire-format work on bodies and streams: usage extraction, same-format
//! passthrough of streams, and translation between OpenAI and Anthropic.

mod passthrough;
mod usage;

pub use passthrough::Passthrough;
pub use usage::{Usage, usage_from_anthropic, usage_from_openai};

/// Turns upstream SSE events into the caller's frames, one event at a time.
pub trait StreamTranslator: Send {
    /// Handles one upstream event (`event` is the SSE event name, "" if none)
    /// and appends complete frames for the caller to `out`.
    fn push(&mut self, event: &str, data: &str, out: &mut Vec<u8>);
    /// The upstream ended cleanly: close the caller's stream properly.
    fn finish(&mut self, out: &mut Vec<u8>);
    /// The upstream broke mid-stream: emit an error event in the caller's
    /// format.
    fn fail(&mut self, message: &str, out: &mut Vec<u8>);
    /// Usage seen so far.
    fn usage(&self) -> Usage;
    /// Whether the upstream's normal end was seen.
    fn completed(&self) -> bool;
}

/// Appends one SSE frame; multi-line data keeps one `data:` line per line.
pub fn write_frame(out: &mut Vec<u8>, event: &str, data: &str) {
    if !event.is_empty() {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(event.as_bytes());
        out.push(b'\n');
    }
    for line in data.split('\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
}
