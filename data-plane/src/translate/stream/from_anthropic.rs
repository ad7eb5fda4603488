//! Anthropic Messages events → OpenAI `chat.completion.chunk` frames.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::super::Usage;
use super::super::mapping::{chat_id, finish_reason, reason_as_sent, unix_now};
use super::super::usage::AnthropicCounts;
use super::{StreamTranslator, event_kind, write_data, write_done, write_openai_error};

pub(super) struct AnthropicToOpenAi {
    model: String,
    include_usage: bool,
    id: String,
    created: u64,
    /// The first chunk (with `role`) went out.
    started: bool,
    /// Anthropic content block index → OpenAI tool call index, for tool_use blocks only.
    tool_index: HashMap<u64, u32>,
    next_tool: u32,
    counts: AnthropicCounts,
    finish_sent: bool,
    /// The provider's own `stop_reason`, for traces.
    sent_reason: Option<&'static str>,
    completed: bool,
    closed: bool,
}

impl AnthropicToOpenAi {
    pub(super) fn new(model: &str, include_usage: bool) -> Self {
        Self {
            model: model.to_owned(),
            include_usage,
            id: chat_id(None),
            created: unix_now(),
            started: false,
            tool_index: HashMap::new(),
            next_tool: 0,
            counts: AnthropicCounts::default(),
            finish_sent: false,
            sent_reason: None,
            completed: false,
            closed: false,
        }
    }

    fn chunk(&self, choices: Value) -> Value {
        let mut c = Map::new();
        c.insert("id".into(), self.id.clone().into());
        c.insert("object".into(), "chat.completion.chunk".into());
        c.insert("created".into(), self.created.into());
        c.insert("model".into(), self.model.clone().into());
        c.insert("choices".into(), choices);
        // With include_usage OpenAI puts `usage: null` on every chunk but the last.
        if self.include_usage {
            c.insert("usage".into(), Value::Null);
        }
        Value::Object(c)
    }

    fn emit_delta(&self, delta: Value, finish: Option<&str>, out: &mut Vec<u8>) {
        let choice =
            json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]);
        write_data(out, &self.chunk(choice));
    }

    /// OpenAI clients expect `role` in the first chunk, whatever arrives first upstream.
    fn ensure_started(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.started = true;
            self.emit_delta(json!({"role": "assistant", "content": ""}), None, out);
        }
    }

    fn emit_finish(&mut self, reason: &str, out: &mut Vec<u8>) {
        if !self.finish_sent {
            self.finish_sent = true;
            self.ensure_started(out);
            self.emit_delta(json!({}), Some(reason), out);
        }
    }

    /// Finish chunk (if not yet sent), usage chunk, `[DONE]`.
    fn close(&mut self, out: &mut Vec<u8>) {
        self.emit_finish("stop", out);
        if self.include_usage {
            let mut last = self.chunk(json!([]));
            if let Some(o) = last.as_object_mut() {
                o.insert("usage".into(), self.counts.to_usage().to_openai_json());
            }
            write_data(out, &last);
        }
        write_done(out);
        self.closed = true;
    }

    fn block_start(&mut self, v: &Value, out: &mut Vec<u8>) {
        let block = &v["content_block"];
        match block["type"].as_str() {
            Some("text") => {
                if let Some(text) = block["text"].as_str().filter(|t| !t.is_empty()) {
                    self.emit_delta(json!({"content": text}), None, out);
                }
            }
            Some("tool_use") => {
                let index = self.next_tool;
                self.next_tool = self.next_tool.saturating_add(1);
                self.tool_index
                    .insert(v["index"].as_u64().unwrap_or(0), index);
                let call = json!({
                    "index": index,
                    "id": block["id"],
                    "type": "function",
                    "function": {"name": block["name"], "arguments": ""},
                });
                self.emit_delta(json!({"tool_calls": [call]}), None, out);
            }
            // thinking and server-tool blocks have no OpenAI chunk form.
            _ => {}
        }
    }

    fn block_delta(&mut self, v: &Value, out: &mut Vec<u8>) {
        let delta = &v["delta"];
        match delta["type"].as_str() {
            Some("text_delta") => {
                if let Some(text) = delta["text"].as_str().filter(|t| !t.is_empty()) {
                    self.emit_delta(json!({"content": text}), None, out);
                }
            }
            Some("input_json_delta") => {
                let tool = v["index"].as_u64().and_then(|i| self.tool_index.get(&i));
                let piece = delta["partial_json"].as_str().filter(|p| !p.is_empty());
                if let (Some(&index), Some(piece)) = (tool, piece) {
                    let call = json!({"index": index, "function": {"arguments": piece}});
                    self.emit_delta(json!({"tool_calls": [call]}), None, out);
                }
            }
            _ => {}
        }
    }
}

impl StreamTranslator for AnthropicToOpenAi {
    fn push(&mut self, event: &str, data: &str, out: &mut Vec<u8>) {
        if self.closed {
            return;
        }
        // Anthropic data is always JSON; anything else is noise we cannot use.
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return;
        };
        match event_kind(event, &v) {
            "message_start" => {
                if let Some(id) = v["message"]["id"].as_str() {
                    self.id = chat_id(Some(id));
                }
                self.counts.merge(&v["message"]["usage"]);
                self.ensure_started(out);
            }
            "content_block_start" => {
                self.ensure_started(out);
                self.block_start(&v, out);
            }
            "content_block_delta" => {
                self.ensure_started(out);
                self.block_delta(&v, out);
            }
            "message_delta" => {
                self.counts.merge(&v["usage"]);
                if let Some(reason) = v["delta"]["stop_reason"].as_str() {
                    self.sent_reason = Some(reason_as_sent(reason));
                    self.emit_finish(finish_reason(Some(reason)), out);
                }
            }
            "message_stop" => {
                self.completed = true;
                self.close(out);
            }
            "error" => {
                let kind = v["error"]["type"].as_str().unwrap_or("api_error");
                let message = v["error"]["message"].as_str().unwrap_or("upstream error");
                write_openai_error(out, kind, message);
                self.closed = true;
            }
            // ping, content_block_stop and future event types carry nothing for OpenAI.
            _ => {}
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.closed {
            return;
        }
        if self.finish_sent {
            // The model's stop reason arrived; only message_stop went missing.
            self.close(out);
        } else {
            self.fail("upstream stream ended before the message was complete", out);
        }
    }

    fn fail(&mut self, message: &str, out: &mut Vec<u8>) {
        if !self.closed {
            write_openai_error(out, "api_error", message);
            self.closed = true;
        }
    }

    fn usage(&self) -> Usage {
        self.counts.to_usage()
    }

    fn completed(&self) -> bool {
        self.completed
    }

    fn finish_reason(&self) -> Option<&'static str> {
        self.sent_reason
    }
}
