//! Chat Completions chunks → Responses events; an Anthropic stream reaches this through
//! the Anthropic → Chat translator first.

use serde_json::Value;

use super::super::super::reason_as_sent;
use super::super::super::stream::StreamTranslator;
use super::super::super::usage::usage_from_openai;
use super::super::super::{Usage, anthropic_stream_to_openai};
use super::super::response::End;
use super::writer::{OnResponseId, Writer};

pub(crate) struct ChatToResponses {
    writer: Writer,
    end: Option<End<'static>>,
    usage: Usage,
    usage_seen: bool,
    /// The provider's own `finish_reason`, for traces.
    sent_reason: Option<&'static str>,
    completed: bool,
    closed: bool,
}

impl ChatToResponses {
    pub(crate) fn new(model: &str, on_id: Option<OnResponseId>) -> Self {
        Self {
            writer: Writer::new(model, on_id),
            end: None,
            usage: Usage::default(),
            usage_seen: false,
            sent_reason: None,
            completed: false,
            closed: false,
        }
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        let end = self.end.unwrap_or(End::Completed);
        self.writer.end(end, &self.usage, out);
        self.completed = true;
        self.closed = true;
    }

    fn chunk(&mut self, v: &Value, out: &mut Vec<u8>) {
        self.writer.start(out);
        // The Responses API has no `n`: only the first choice is relayed.
        let choice = v["choices"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["index"].as_u64().unwrap_or(0) == 0);
        if let Some(choice) = choice {
            let delta = &choice["delta"];
            if let Some(text) = delta["content"].as_str() {
                self.writer.text(text, out);
            }
            if let Some(refusal) = delta["refusal"].as_str() {
                self.writer.text(refusal, out);
            }
            for call in delta["tool_calls"].as_array().into_iter().flatten() {
                let key = call["index"].as_u64().unwrap_or(0);
                if !self.writer.has_call(key) {
                    let id = call["id"].as_str().unwrap_or_default();
                    let name = call["function"]["name"].as_str().unwrap_or_default();
                    self.writer.call_start(key, id, name, out);
                }
                if let Some(args) = call["function"]["arguments"].as_str() {
                    self.writer.call_arguments(key, args, out);
                }
            }
            if let Some(reason) = choice["finish_reason"].as_str() {
                self.end = Some(End::of_finish(Some(reason)));
                self.sent_reason = Some(reason_as_sent(reason));
            }
        }
        if v["usage"].is_object() {
            self.usage = usage_from_openai(v);
            self.usage_seen = true;
        }
        // The usage chunk follows the finish chunk; end once both are in.
        if self.end.is_some() && self.usage_seen {
            self.end(out);
        }
    }
}

impl StreamTranslator for ChatToResponses {
    fn push(&mut self, _event: &str, data: &str, out: &mut Vec<u8>) {
        if self.closed {
            return;
        }
        let data = data.trim();
        if data == "[DONE]" {
            self.end(out);
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return;
        };
        if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
            let message = err["message"]
                .as_str()
                .or(err.as_str())
                .unwrap_or("upstream error");
            self.fail(message, out);
            return;
        }
        self.chunk(&v, out);
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.closed {
            return;
        }
        if self.end.is_some() {
            // Finish reason seen but no usage chunk or [DONE]: the answer itself is whole.
            self.end(out);
        } else {
            self.fail(
                "upstream stream ended before the response was complete",
                out,
            );
        }
    }

    fn fail(&mut self, message: &str, out: &mut Vec<u8>) {
        if !self.closed {
            self.writer.fail(message, &self.usage, out);
            self.closed = true;
        }
    }

    fn usage(&self) -> Usage {
        self.usage
    }

    fn completed(&self) -> bool {
        self.completed
    }

    fn finish_reason(&self) -> Option<&'static str> {
        self.sent_reason
    }
}

/// An Anthropic stream, translated to Chat chunks and those to Responses events.
pub(crate) struct AnthropicToResponses {
    first: Box<dyn StreamTranslator>,
    second: ChatToResponses,
    chunks: Vec<u8>,
}

impl AnthropicToResponses {
    pub(crate) fn new(model: &str, on_id: Option<OnResponseId>) -> Self {
        Self {
            first: anthropic_stream_to_openai(model, true),
            second: ChatToResponses::new(model, on_id),
            chunks: Vec::new(),
        }
    }

    /// Feeds the Chat chunks the first translator wrote (`data: …` frames, one line each).
    fn relay(&mut self, out: &mut Vec<u8>) {
        let chunks = std::mem::take(&mut self.chunks);
        if let Ok(text) = std::str::from_utf8(&chunks) {
            for line in text.lines() {
                if let Some(data) = line.strip_prefix("data: ") {
                    self.second.push("", data, out);
                }
            }
        }
        self.chunks = chunks;
        self.chunks.clear();
    }
}

impl StreamTranslator for AnthropicToResponses {
    fn push(&mut self, event: &str, data: &str, out: &mut Vec<u8>) {
        self.first.push(event, data, &mut self.chunks);
        self.relay(out);
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        self.first.finish(&mut self.chunks);
        self.relay(out);
        self.second.finish(out);
    }

    fn fail(&mut self, message: &str, out: &mut Vec<u8>) {
        self.second.fail(message, out);
    }

    fn usage(&self) -> Usage {
        self.first.usage()
    }

    fn completed(&self) -> bool {
        self.first.completed()
    }

    fn finish_reason(&self) -> Option<&'static str> {
        self.first.finish_reason()
    }
}
