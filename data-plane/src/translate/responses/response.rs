//! Whole Responses objects: the envelope every Responses answer shares, and a
//! Chat Completions (or, through it, Anthropic) answer turned into one.

use serde_json::{Value, json};

use super::super::Usage;
use super::super::mapping::{fresh_suffix, unix_now};
use super::super::usage::usage_from_openai;
use super::usage_json;

/// What names a translated response: its id, creation time and model.
pub(crate) struct Envelope {
    pub id: String,
    pub created_at: u64,
    pub model: String,
}

impl Envelope {
    /// A new response of `model`, named after the upstream's own id when there is one.
    pub(crate) fn new(model: &str, upstream_id: Option<&str>) -> Self {
        let id = match upstream_id.filter(|s| !s.is_empty()) {
            Some(up) => {
                let up = up
                    .strip_prefix("chatcmpl-")
                    .or_else(|| up.strip_prefix("msg_"))
                    .unwrap_or(up);
                format!("resp_{up}")
            }
            None => format!("resp_{}", fresh_suffix()),
        };
        Self {
            id,
            created_at: unix_now(),
            model: model.to_owned(),
        }
    }

    /// The response object in `status` with `output` (and, once known, usage).
    pub(crate) fn object(&self, end: End<'_>, output: &[Value], usage: Option<&Usage>) -> Value {
        let (status, incomplete, error) = match end {
            End::InProgress => ("in_progress", Value::Null, Value::Null),
            End::Completed => ("completed", Value::Null, Value::Null),
            End::Incomplete(reason) => ("incomplete", json!({"reason": reason}), Value::Null),
            End::Failed(message) => (
                "failed",
                Value::Null,
                json!({"code": "server_error", "message": message}),
            ),
        };
        json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": error,
            "incomplete_details": incomplete,
            "model": self.model,
            "output": output,
            "parallel_tool_calls": true,
            "tool_choice": "auto",
            "tools": [],
            "usage": usage.map_or(Value::Null, usage_json),
        })
    }
}

/// How a response ended (or that it has not yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End<'a> {
    InProgress,
    Completed,
    /// `max_output_tokens` or `content_filter`.
    Incomplete(&'a str),
    Failed(&'a str),
}

impl End<'static> {
    /// The end a Chat Completions `finish_reason` means.
    pub(crate) fn of_finish(reason: Option<&str>) -> Self {
        match reason {
            Some("length") => End::Incomplete("max_output_tokens"),
            Some("content_filter") => End::Incomplete("content_filter"),
            _ => End::Completed,
        }
    }
}

/// An assistant message item holding `text`.
pub(crate) fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({
        "id": id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    })
}

/// A function call item.
pub(crate) fn function_call_item(
    id: &str,
    call_id: &str,
    name: &str,
    arguments: &str,
    status: &str,
) -> Value {
    json!({
        "id": id,
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    })
}

/// Translates a Chat Completions answer into a Responses object naming `client_model`.
pub fn chat_to_responses_response(body: &Value, client_model: &str) -> Value {
    let envelope = Envelope::new(client_model, body["id"].as_str());
    let choice = &body["choices"][0];
    let message = &choice["message"];
    let mut output = Vec::new();
    let text = match &message["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect(),
        _ => String::new(),
    };
    if !text.is_empty() {
        output.push(message_item(
            &format!("msg_{}", fresh_suffix()),
            &text,
            "completed",
        ));
    } else if let Some(refusal) = message["refusal"].as_str().filter(|r| !r.is_empty()) {
        output.push(json!({
            "id": format!("msg_{}", fresh_suffix()),
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "refusal", "refusal": refusal}],
        }));
    }
    for call in message["tool_calls"].as_array().into_iter().flatten() {
        output.push(function_call_item(
            &format!("fc_{}", fresh_suffix()),
            call["id"].as_str().unwrap_or_default(),
            call["function"]["name"].as_str().unwrap_or_default(),
            call["function"]["arguments"].as_str().unwrap_or("{}"),
            "completed",
        ));
    }
    let usage = usage_from_openai(body);
    envelope.object(
        End::of_finish(choice["finish_reason"].as_str()),
        &output,
        Some(&usage),
    )
}
