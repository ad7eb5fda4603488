//! OpenAI `chat.completion.chunk` frames → Anthropic Messages events.

use serde_json::{Value, json};

use super::super::Usage;
use super::super::mapping::{message_id, reason_as_sent, stop_reason, tool_use_id};
use super::super::usage::usage_from_openai;
use super::{StreamTranslator, write_anthropic_error, write_event};

/// The Anthropic content block currently open.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Open {
    None,
    Text(u32),
    /// A tool_use block and the OpenAI tool call index feeding it.
    Tool(u32, u64),
}

pub(super) struct OpenAiToAnthropic {
    model: String,
    started: bool,
    open: Open,
    next_block: u32,
    stop_reason: Option<&'static str>,
    /// The provider's own `finish_reason`, for traces.
    sent_reason: Option<&'static str>,
    usage: Usage,
    usage_seen: bool,
    completed: bool,
    closed: bool,
}

impl OpenAiToAnthropic {
    pub(super) fn new(model: &str) -> Self {
        Self {
            model: model.to_owned(),
            started: false,
            open: Open::None,
            next_block: 0,
            stop_reason: None,
            sent_reason: None,
            usage: Usage::default(),
            usage_seen: false,
            completed: false,
            closed: false,
        }
    }

    fn ensure_started(&mut self, upstream_id: Option<&str>, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        // OpenAI reports prompt tokens only at the end; message_delta carries the real ones.
        let start = json!({
            "type": "message_start",
            "message": {
                "id": message_id(upstream_id),
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            },
        });
        write_event(out, "message_start", &start);
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        let index = match self.open {
            Open::None => return,
            Open::Text(i) | Open::Tool(i, _) => i,
        };
        write_event(
            out,
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        );
        self.open = Open::None;
    }

    fn open_block(&mut self, kind: Open, block: Value, out: &mut Vec<u8>) {
        self.close_block(out);
        let index = self.next_block;
        self.next_block = self.next_block.saturating_add(1);
        self.open = match kind {
            Open::Tool(_, call) => Open::Tool(index, call),
            _ => Open::Text(index),
        };
        let start = json!({"type": "content_block_start", "index": index, "content_block": block});
        write_event(out, "content_block_start", &start);
    }

    fn delta(&self, delta: Value, out: &mut Vec<u8>) {
        let index = match self.open {
            Open::Text(i) | Open::Tool(i, _) => i,
            Open::None => return,
        };
        let v = json!({"type": "content_block_delta", "index": index, "delta": delta});
        write_event(out, "content_block_delta", &v);
    }

    fn text(&mut self, text: &str, out: &mut Vec<u8>) {
        if text.is_empty() {
            return;
        }
        if !matches!(self.open, Open::Text(_)) {
            self.open_block(Open::Text(0), json!({"type": "text", "text": ""}), out);
        }
        self.delta(json!({"type": "text_delta", "text": text}), out);
    }

    fn tool_call(&mut self, call: &Value, out: &mut Vec<u8>) {
        let index = call["index"].as_u64().unwrap_or(0);
        let continuing = matches!(self.open, Open::Tool(_, i) if i == index);
        if !continuing {
            let id = call["id"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map_or_else(tool_use_id, str::to_owned);
            let name = call["function"]["name"].as_str().unwrap_or_default();
            let block = json!({"type": "tool_use", "id": id, "name": name, "input": {}});
            self.open_block(Open::Tool(0, index), block, out);
        }
        if let Some(piece) = call["function"]["arguments"]
            .as_str()
            .filter(|a| !a.is_empty())
        {
            self.delta(
                json!({"type": "input_json_delta", "partial_json": piece}),
                out,
            );
        }
    }

    /// message_delta with the stop reason and full usage, then message_stop.
    fn end(&mut self, out: &mut Vec<u8>) {
        self.ensure_started(None, out);
        self.close_block(out);
        let delta = json!({
            "type": "message_delta",
            "delta": {"stop_reason": self.stop_reason.unwrap_or("end_turn"), "stop_sequence": null},
            "usage": self.usage.to_anthropic_json(),
        });
        write_event(out, "message_delta", &delta);
        write_event(out, "message_stop", &json!({"type": "message_stop"}));
        self.closed = true;
    }

    fn chunk(&mut self, v: &Value, out: &mut Vec<u8>) {
        self.ensure_started(v["id"].as_str(), out);
        // Anthropic has no `n`: only the first choice is relayed.
        let choice = v["choices"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["index"].as_u64().unwrap_or(0) == 0);
        if let Some(choice) = choice {
            let delta = &choice["delta"];
            if let Some(text) = delta["content"].as_str() {
                self.text(text, out);
            }
            if let Some(refusal) = delta["refusal"].as_str() {
                self.text(refusal, out);
            }
            for call in delta["tool_calls"].as_array().into_iter().flatten() {
                self.tool_call(call, out);
            }
            if let Some(reason) = choice["finish_reason"].as_str() {
                self.stop_reason = Some(stop_reason(Some(reason)));
                self.sent_reason = Some(reason_as_sent(reason));
                self.completed = true;
                self.close_block(out);
            }
        }
        if v["usage"].is_object() {
            self.usage = usage_from_openai(v);
            self.usage_seen = true;
        }
        // The usage chunk (if requested) follows the finish chunk; end once both are in.
        if self.stop_reason.is_some() && self.usage_seen {
            self.end(out);
        }
    }
}

impl StreamTranslator for OpenAiToAnthropic {
    fn push(&mut self, _event: &str, data: &str, out: &mut Vec<u8>) {
        if self.closed {
            return;
        }
        let data = data.trim();
        if data == "[DONE]" {
            self.completed = true;
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
            write_anthropic_error(out, "api_error", message);
            self.closed = true;
            return;
        }
        self.chunk(&v, out);
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.closed {
            return;
        }
        if self.stop_reason.is_some() {
            // Finish reason seen but no usage chunk or [DONE]: the answer itself is whole.
            self.end(out);
        } else {
            self.fail("upstream stream ended before the message was complete", out);
        }
    }

    fn fail(&mut self, message: &str, out: &mut Vec<u8>) {
        if !self.closed {
            write_anthropic_error(out, "api_error", message);
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
