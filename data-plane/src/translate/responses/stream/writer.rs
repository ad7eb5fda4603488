//! Writes a Responses event stream: `response.created`, `response.in_progress`, each
//! output item's added → deltas → done events, and `response.completed` (or
//! `response.incomplete` / `response.failed`), every event numbered in order.

use serde_json::{Value, json};

use super::super::super::Usage;
use super::super::super::mapping::fresh_suffix;
use super::super::super::stream::write_event;
use super::super::response::{End, Envelope, function_call_item, message_item};

/// Called once with the response id as soon as it is known.
pub type OnResponseId = Box<dyn FnMut(&str) + Send>;

/// An output item still being written.
enum Open {
    Message {
        index: usize,
        id: String,
        text: String,
    },
    Call {
        index: usize,
        /// The upstream's handle for the call (Chat tool call index).
        key: u64,
        id: String,
        call_id: String,
        name: String,
        arguments: String,
    },
}

pub(crate) struct Writer {
    envelope: Envelope,
    sequence: u64,
    started: bool,
    /// Finished items by output index (None while still open).
    output: Vec<Option<Value>>,
    open: Vec<Open>,
    on_id: Option<OnResponseId>,
}

impl Writer {
    pub(crate) fn new(model: &str, on_id: Option<OnResponseId>) -> Self {
        Self {
            envelope: Envelope::new(model, None),
            sequence: 0,
            started: false,
            output: Vec::new(),
            open: Vec::new(),
            on_id,
        }
    }

    fn emit(&mut self, kind: &str, mut v: Value, out: &mut Vec<u8>) {
        if let Some(o) = v.as_object_mut() {
            o.insert("type".into(), kind.into());
            o.insert("sequence_number".into(), self.sequence.into());
        }
        self.sequence += 1;
        write_event(out, kind, &v);
    }

    /// `response.created` and `response.in_progress`, once.
    pub(crate) fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        if let Some(mut on_id) = self.on_id.take() {
            on_id(&self.envelope.id);
        }
        let response = self.envelope.object(End::InProgress, &[], None);
        self.emit("response.created", json!({"response": response}), out);
        let response = self.envelope.object(End::InProgress, &[], None);
        self.emit("response.in_progress", json!({"response": response}), out);
    }

    fn next_index(&mut self) -> usize {
        self.output.push(None);
        self.output.len() - 1
    }

    /// Appends text to the open message, opening one first if needed.
    pub(crate) fn text(&mut self, delta: &str, out: &mut Vec<u8>) {
        if delta.is_empty() {
            return;
        }
        self.start(out);
        let open = self
            .open
            .iter()
            .position(|o| matches!(o, Open::Message { .. }));
        let at = match open {
            Some(at) => at,
            None => {
                let index = self.next_index();
                let id = format!("msg_{}", fresh_suffix());
                let item = json!({
                    "id": id, "type": "message", "status": "in_progress",
                    "role": "assistant", "content": [],
                });
                self.emit(
                    "response.output_item.added",
                    json!({"output_index": index, "item": item}),
                    out,
                );
                let part =
                    json!({"type": "output_text", "text": "", "annotations": [], "logprobs": []});
                self.emit(
                    "response.content_part.added",
                    json!({"item_id": id, "output_index": index, "content_index": 0, "part": part}),
                    out,
                );
                self.open.push(Open::Message {
                    index,
                    id,
                    text: String::new(),
                });
                self.open.len() - 1
            }
        };
        let Open::Message { index, id, text } = &mut self.open[at] else {
            return;
        };
        text.push_str(delta);
        let v = json!({
            "item_id": id, "output_index": *index, "content_index": 0,
            "delta": delta, "logprobs": [],
        });
        self.emit("response.output_text.delta", v, out);
    }

    /// Whether a call with this upstream handle is open.
    pub(crate) fn has_call(&self, key: u64) -> bool {
        self.open
            .iter()
            .any(|o| matches!(o, Open::Call { key: k, .. } if *k == key))
    }

    /// Opens a function call; the open message, if any, is finished first (the model
    /// writes its text before its calls).
    pub(crate) fn call_start(&mut self, key: u64, call_id: &str, name: &str, out: &mut Vec<u8>) {
        self.start(out);
        if let Some(at) = self
            .open
            .iter()
            .position(|o| matches!(o, Open::Message { .. }))
        {
            let message = self.open.remove(at);
            self.close(message, out);
        }
        let index = self.next_index();
        let id = format!("fc_{}", fresh_suffix());
        let call_id = if call_id.is_empty() {
            format!("call_{}", fresh_suffix())
        } else {
            call_id.to_owned()
        };
        let item = function_call_item(&id, &call_id, name, "", "in_progress");
        self.emit(
            "response.output_item.added",
            json!({"output_index": index, "item": item}),
            out,
        );
        self.open.push(Open::Call {
            index,
            key,
            id,
            call_id,
            name: name.to_owned(),
            arguments: String::new(),
        });
    }

    /// Appends argument text to the open call `key`.
    pub(crate) fn call_arguments(&mut self, key: u64, delta: &str, out: &mut Vec<u8>) {
        if delta.is_empty() {
            return;
        }
        let Some(Open::Call {
            index,
            id,
            arguments,
            ..
        }) = self
            .open
            .iter_mut()
            .find(|o| matches!(o, Open::Call { key: k, .. } if *k == key))
        else {
            return;
        };
        arguments.push_str(delta);
        let v = json!({"item_id": id, "output_index": *index, "delta": delta});
        self.emit("response.function_call_arguments.delta", v, out);
    }

    fn close(&mut self, item: Open, out: &mut Vec<u8>) {
        match item {
            Open::Message { index, id, text } => {
                let base = json!({"item_id": id, "output_index": index, "content_index": 0});
                let mut done = base.clone();
                done["text"] = json!(text);
                done["logprobs"] = json!([]);
                self.emit("response.output_text.done", done, out);
                let mut part = base;
                part["part"] =
                    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []});
                self.emit("response.content_part.done", part, out);
                let item = message_item(&id, &text, "completed");
                self.finish_item(index, item, out);
            }
            Open::Call {
                index,
                id,
                call_id,
                name,
                arguments,
                ..
            } => {
                let v = json!({
                    "item_id": id, "output_index": index, "name": name, "arguments": arguments,
                });
                self.emit("response.function_call_arguments.done", v, out);
                let item = function_call_item(&id, &call_id, &name, &arguments, "completed");
                self.finish_item(index, item, out);
            }
        }
    }

    fn finish_item(&mut self, index: usize, item: Value, out: &mut Vec<u8>) {
        self.emit(
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
            out,
        );
        if let Some(slot) = self.output.get_mut(index) {
            *slot = Some(item);
        }
    }

    /// Finishes every open item, then the response.
    pub(crate) fn end(&mut self, end: End<'_>, usage: &Usage, out: &mut Vec<u8>) {
        self.start(out);
        for item in std::mem::take(&mut self.open) {
            self.close(item, out);
        }
        let output: Vec<Value> = self.output.iter().flatten().cloned().collect();
        let kind = match end {
            End::Incomplete(_) => "response.incomplete",
            End::Failed(_) => "response.failed",
            _ => "response.completed",
        };
        let response = self.envelope.object(end, &output, Some(usage));
        self.emit(kind, json!({"response": response}), out);
    }

    /// Ends the response as failed, without finishing its open items (they are
    /// not whole).
    pub(crate) fn fail(&mut self, message: &str, usage: &Usage, out: &mut Vec<u8>) {
        self.start(out);
        self.open.clear();
        self.end(End::Failed(message), usage, out);
    }
}
