//! Reads a Responses request body: parsed once, with the few fields the request path
//! needs checked.

use bytes::Bytes;
use keel::pb;
use serde_json::{Map, Value, json};

use crate::error::ApiError;

/// A parsed Responses request.
pub struct ResponsesRequest {
    pub body: Map<String, Value>,
    /// The body as the app sent it, while `body` is unchanged from it.
    pub raw: Option<Bytes>,
    /// Requested model (`auto` when absent).
    pub model: String,
    pub stream: bool,
    /// The response this one continues (kept by the provider that made it).
    pub previous_response_id: Option<String>,
}

/// Parses and checks a Responses body.
pub fn parse(bytes: Bytes) -> Result<ResponsesRequest, ApiError> {
    let body: Map<String, Value> = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("request body is not a JSON object: {e}")))?;
    match body.get("input") {
        None | Some(Value::Null) => return Err(ApiError::BadRequest("`input` is required".into())),
        Some(Value::String(_)) => {}
        Some(Value::Array(items)) => {
            if let Some(i) = items.iter().position(|item| !item.is_object()) {
                return Err(ApiError::BadRequest(format!(
                    "`input[{i}]` must be an object"
                )));
            }
        }
        Some(_) => {
            return Err(ApiError::BadRequest(
                "`input` must be a string or an array of items".into(),
            ));
        }
    }
    let model = match body.get("model") {
        None | Some(Value::Null) => "auto".to_owned(),
        Some(Value::String(s)) if s.is_empty() => "auto".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(ApiError::BadRequest("`model` must be a string".into())),
    };
    crate::inbound::check_name("`model`", Some(&model))?;
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::BadRequest("`stream` must be a boolean".into())),
    };
    let previous_response_id = match body.get("previous_response_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(_) => {
            return Err(ApiError::BadRequest(
                "`previous_response_id` must be a non-empty string".into(),
            ));
        }
    };
    if body.get("background").and_then(Value::as_bool) == Some(true) {
        return Err(ApiError::BadRequest(
            "`background` responses are not supported through Keel (the sidecar streams or waits for each answer)".into(),
        ));
    }
    Ok(ResponsesRequest {
        body,
        raw: Some(bytes),
        model,
        stream,
        previous_response_id,
    })
}

/// Adds the decision's injected messages as developer messages right before the
/// latest user message, or after the function call outputs that end the input;
/// whether there were any.
pub fn inject(body: &mut Map<String, Value>, inject: &[pb::InjectedMessage]) -> bool {
    if inject.is_empty() {
        return false;
    }
    let input = body
        .entry("input")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::String(s) = input {
        *input = json!([{"role": "user", "content": std::mem::take(s)}]);
    }
    let Value::Array(items) = input else {
        return false;
    };
    let ends_in_output = items.last().is_some_and(|i| {
        i.get("type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.ends_with("call_output"))
    });
    let at = if ends_in_output {
        items.len()
    } else {
        items.len().saturating_sub(1)
    };
    for (i, m) in inject.iter().enumerate() {
        let item = json!({"type": "message", "role": "developer", "content": m.content});
        items.insert(at + i, item);
    }
    true
}
