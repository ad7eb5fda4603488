//! Same-format streams: frames go to the app as the provider sent them, while
//! usage and the end of the stream are watched.

use serde_json::Value;

use super::super::mapping::reason_as_sent;
use super::super::usage::{AnthropicCounts, usage_from_openai};
use super::super::{Format, Usage};
use super::{StreamTranslator, event_kind, write_anthropic_error, write_frame, write_openai_error};

/// Relays a stream in the format it arrived in.
pub(super) struct Passthrough {
    format: Format,
    /// Keel asked an OpenAI provider for a usage chunk the app did not ask
    /// for: drop that chunk.
    strip_usage_chunk: bool,
    openai: Usage,
    anthropic: AnthropicCounts,
    /// The provider's finish reason, for traces.
    finish_reason: Option<&'static str>,
    completed: bool,
    /// The caller's stream has ended (normally, or with an error event of
    /// the provider's or ours): nothing more is written.
    closed: bool,
}

impl Passthrough {
    pub(super) fn new(format: Format, strip_usage_chunk: bool) -> Self {
        Self {
            format,
            strip_usage_chunk,
            openai: Usage::default(),
            anthropic: AnthropicCounts::default(),
            finish_reason: None,
            completed: false,
            closed: false,
        }
    }

    /// Returns false when the frame must not reach the app.
    fn watch_openai(&mut self, data: &str) -> bool {
        let data = data.trim();
        if data == "[DONE]" {
            self.completed = true;
            self.closed = true;
            return true;
        }
        // Text chunks are the bulk of a stream and need no parsing; with
        // include_usage every chunk but the last says `"usage":null`.
        let usage = data.contains("\"usage\"") && !data.contains("\"usage\":null");
        // Likewise only the last choice chunk has a finish reason.
        let finish = data.contains("\"finish_reason\"") && !data.contains("\"finish_reason\":null");
        if !usage && !finish && !data.contains("\"error\"") {
            return true;
        }
        let Ok(chunk) = serde_json::from_str::<Value>(data) else {
            return true;
        };
        if chunk.get("error").is_some_and(|e| !e.is_null()) {
            // The provider's own error event ends the stream for the app.
            self.closed = true;
            return true;
        }
        // The first choice's reason (with `n` > 1 each choice ends apart).
        let first = chunk["choices"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["index"].as_u64().unwrap_or(0) == 0);
        if let Some(reason) = first.and_then(|c| c["finish_reason"].as_str()) {
            self.finish_reason = Some(reason_as_sent(reason));
        }
        if !chunk.get("usage").is_some_and(Value::is_object) {
            return true;
        }
        self.openai = usage_from_openai(&chunk);
        let usage_only = chunk
            .get("choices")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty);
        !(self.strip_usage_chunk && usage_only)
    }

    fn watch_anthropic(&mut self, event: &str, data: &str) {
        // Only these events matter; content deltas (the bulk) are not parsed.
        if !matches!(
            event,
            "" | "message_start" | "message_delta" | "message_stop" | "error"
        ) {
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return;
        };
        match event_kind(event, &v) {
            "message_start" => self.anthropic.merge(&v["message"]["usage"]),
            "message_delta" => {
                self.anthropic.merge(&v["usage"]);
                if let Some(reason) = v["delta"]["stop_reason"].as_str() {
                    self.finish_reason = Some(reason_as_sent(reason));
                }
            }
            "message_stop" => {
                self.completed = true;
                self.closed = true;
            }
            "error" => self.closed = true,
            _ => {}
        }
    }
}

impl StreamTranslator for Passthrough {
    fn push(&mut self, event: &str, data: &str, out: &mut Vec<u8>) {
        if self.closed {
            return;
        }
        let forward = match self.format {
            Format::OpenAi => self.watch_openai(data),
            Format::Anthropic => {
                self.watch_anthropic(event, data);
                true
            }
        };
        if forward {
            write_frame(out, event, data);
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        self.fail("upstream stream ended before the message was complete", out);
    }

    fn fail(&mut self, message: &str, out: &mut Vec<u8>) {
        if self.closed {
            return;
        }
        self.closed = true;
        match self.format {
            Format::OpenAi => write_openai_error(out, "api_error", message),
            Format::Anthropic => write_anthropic_error(out, "api_error", message),
        }
    }

    fn usage(&self) -> Usage {
        match self.format {
            Format::OpenAi => self.openai,
            Format::Anthropic => self.anthropic.to_usage(),
        }
    }

    fn completed(&self) -> bool {
        self.completed
    }

    fn finish_reason(&self) -> Option<&'static str> {
        self.finish_reason
    }
}
