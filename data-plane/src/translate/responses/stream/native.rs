//! A Responses stream from a provider that speaks the Responses API: events reach the
//! app as sent (reasoning items, encrypted content and unknown events untouched) while
//! the response id, usage and the normal end are watched.

use serde_json::{Value, json};

use super::super::super::Usage;
use super::super::super::responses_finish_reason;
use super::super::super::stream::{StreamTranslator, event_kind, write_event, write_frame};
use super::super::usage_from_responses;
use super::writer::OnResponseId;

pub(crate) struct NativeResponses {
    on_id: Option<OnResponseId>,
    /// The provider's response as last announced (for a failure event of ours).
    id: String,
    model: String,
    /// Events relayed so far: the next sequence number of the provider's numbering.
    events: u64,
    usage: Usage,
    /// The response's status or why it is incomplete, for traces.
    finish_reason: Option<&'static str>,
    completed: bool,
    closed: bool,
}

/// Events whose payload is read; the deltas (the bulk) are relayed unparsed.
const WATCHED: &[&str] = &[
    "response.created",
    "response.completed",
    "response.incomplete",
    "response.failed",
    "error",
];

impl NativeResponses {
    pub(crate) fn new(on_id: Option<OnResponseId>) -> Self {
        Self {
            on_id,
            id: String::new(),
            model: String::new(),
            events: 0,
            usage: Usage::default(),
            finish_reason: None,
            completed: false,
            closed: false,
        }
    }

    fn watch(&mut self, event: &str, data: &str) {
        let named = !event.is_empty() && event != "message";
        if named && !WATCHED.contains(&event) {
            return;
        }
        // Unnamed events carry their kind in `type` only: look before parsing.
        if !named && !WATCHED.iter().any(|w| data.contains(w)) {
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return;
        };
        let response = &v["response"];
        match event_kind(event, &v) {
            "response.created" => {
                self.id = response["id"].as_str().unwrap_or_default().to_owned();
                self.model = response["model"].as_str().unwrap_or_default().to_owned();
                if let Some(mut on_id) = self.on_id.take().filter(|_| !self.id.is_empty()) {
                    on_id(&self.id);
                }
            }
            "response.completed" | "response.incomplete" => {
                self.usage = usage_from_responses(response);
                self.finish_reason = responses_finish_reason(response);
                self.completed = true;
                self.closed = true;
            }
            "response.failed" => {
                self.usage = usage_from_responses(response);
                self.closed = true;
            }
            "error" => self.closed = true,
            _ => {}
        }
    }
}

impl StreamTranslator for NativeResponses {
    fn push(&mut self, event: &str, data: &str, out: &mut Vec<u8>) {
        if self.closed {
            return;
        }
        self.watch(event, data);
        self.events += 1;
        write_frame(out, event, data);
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        self.fail(
            "upstream stream ended before the response was complete",
            out,
        );
    }

    fn fail(&mut self, message: &str, out: &mut Vec<u8>) {
        if self.closed {
            return;
        }
        self.closed = true;
        let response = json!({
            "id": self.id,
            "object": "response",
            "status": "failed",
            "model": self.model,
            "output": [],
            "error": {"code": "server_error", "message": message},
            "incomplete_details": null,
            "usage": null,
        });
        let v = json!({
            "type": "response.failed",
            "sequence_number": self.events,
            "response": response,
        });
        write_event(out, "response.failed", &v);
    }

    fn usage(&self) -> Usage {
        self.usage
    }

    fn completed(&self) -> bool {
        self.completed
    }

    fn finish_reason(&self) -> Option<&'static str> {
        self.finish_reason
    }
}
