//! Same-format streams: frames go to the app as the provider sent them, while
//! usage and the end of the stream are watched.

use serde_json::Value;

use super::{StreamTranslator, Usage, usage_from_anthropic, usage_from_openai, write_frame};
use crate::format::Format;

/// Relays a stream in the format it arrived in.
pub struct Passthrough {
    format: Format,
    /// Keel asked an OpenAI provider for a usage chunk the app did not ask
    /// for: drop that chunk.
    strip_usage_chunk: bool,
    usage: Usage,
    completed: bool,
}

impl Passthrough {
    pub fn new(format: Format, strip_usage_chunk: bool) -> Self {
        Self {
            format,
            strip_usage_chunk,
            usage: Usage::default(),
            completed: false,
        }
    }

    /// Returns false when the frame must not reach the app.
    fn watch_openai(&mut self, data: &str) -> bool {
        if data == "[DONE]" {
            self.completed = true;
            return true;
        }
        // Only chunks that mention usage are parsed.
        if !data.contains("\"usage\"") {
            return true;
        }
        let Ok(chunk) = serde_json::from_str::<Value>(data) else {
            return true;
        };
        match chunk.get("usage") {
            Some(u) if !u.is_null() => {
                self.usage = usage_from_openai(u);
                let usage_only = chunk
                    .get("choices")
                    .and_then(Value::as_array)
                    .is_some_and(Vec::is_empty);
                !(self.strip_usage_chunk && usage_only)
            }
            _ => true,
        }
    }

    fn watch_anthropic(&mut self, event: &str, data: &str) {
        match event {
            "message_start" => {
                if let Ok(v) = serde_json::from_str::<Value>(data)
                    && let Some(u) = v.pointer("/message/usage")
                {
                    self.usage = usage_from_anthropic(u);
                }
            }
            "message_delta" => {
                if let Ok(v) = serde_json::from_str::<Value>(data)
                    && let Some(u) = v.get("usage")
                {
                    // message_delta carries cumulative output tokens.
                    let later = usage_from_anthropic(u);
                    self.usage.output_tokens = later.output_tokens;
                    if later.input_tokens > self.usage.input_tokens {
                        self.usage.input_tokens = later.input_tokens;
                    }
                }
            }
            "message_stop" => self.completed = true,
            _ => {}
        }
    }
}

impl StreamTranslator for Passthrough {
    fn push(&mut self, event: &str, data: &str, out: &mut Vec<u8>) {
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

    fn finish(&mut self, _out: &mut Vec<u8>) {}

    fn fail(&mut self, message: &str, out: &mut Vec<u8>) {
        match self.format {
            Format::OpenAi => {
                let body = serde_json::json!({"error": {"message": message, "type": "api_error", "param": null, "code": "stream_broken"}});
                write_frame(out, "", &body.to_string());
            }
            Format::Anthropic => {
                let body = serde_json::json!({"type": "error", "error": {"type": "api_error", "message": message}});
                write_frame(out, "error", &body.to_string());
            }
        }
    }

    fn usage(&self) -> Usage {
        self.usage
    }

    fn completed(&self) -> bool {
        self.completed
    }
}
