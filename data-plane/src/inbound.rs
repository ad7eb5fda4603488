//! Reads what the app sent: Keel's headers, the body (within the size limit)
//! and the few fields of it routing needs. The body is parsed once.

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{Map, Value};

use crate::{error::ApiError, format::Format};

/// Keel's request headers.
#[derive(Debug, Default)]
pub struct KeelHeaders {
    pub conversation_id: Option<String>,
    pub profile: Option<String>,
}

/// Reads `X-Conversation-ID` and `X-Router-Profile`.
pub fn keel_headers(headers: &HeaderMap) -> Result<KeelHeaders, ApiError> {
    let text = |name: &str| -> Result<Option<String>, ApiError> {
        match headers.get(name) {
            None => Ok(None),
            Some(v) => {
                let s = v.to_str().map_err(|_| {
                    ApiError::BadRequest(format!("header {name} must be visible ASCII"))
                })?;
                let s = s.trim();
                Ok((!s.is_empty()).then(|| s.to_owned()))
            }
        }
    };
    let conversation_id = text("x-conversation-id")?;
    if let Some(id) = &conversation_id
        && id.len() > keel::MAX_CONVERSATION_ID_BYTES
    {
        return Err(ApiError::BadRequest(format!(
            "X-Conversation-ID is {} bytes; at most {} allowed",
            id.len(),
            keel::MAX_CONVERSATION_ID_BYTES
        )));
    }
    let profile = text("x-router-profile")?.map(|p| p.to_ascii_uppercase());
    Ok(KeelHeaders {
        conversation_id,
        profile,
    })
}

/// Reads the whole request body, refusing more than `limit` bytes.
pub async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, ApiError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::PayloadTooLarge(limit))
        }
        Err(e) => Err(ApiError::BadRequest(format!(
            "cannot read request body: {e}"
        ))),
    }
}

/// A parsed chat request.
pub struct ChatRequest {
    pub body: Map<String, Value>,
    /// The body as the app sent it, while `body` is unchanged from it.
    pub raw: Option<Bytes>,
    /// Requested model (`auto` when absent).
    pub model: String,
    pub stream: bool,
    /// The app's API headers and query string (passthrough.rs).
    pub passthrough: crate::passthrough::Passthrough,
}

/// Parses and checks a chat request body of `format`.
pub fn parse_chat(format: Format, bytes: Bytes) -> Result<ChatRequest, ApiError> {
    let body: Map<String, Value> = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("request body is not a JSON object: {e}")))?;
    match body.get("messages") {
        None => return Err(ApiError::BadRequest("`messages` is required".into())),
        Some(Value::Array(m)) if m.is_empty() => {
            return Err(ApiError::BadRequest("`messages` must not be empty".into()));
        }
        Some(Value::Array(m)) => {
            if let Some(i) = m
                .iter()
                .position(|msg| !msg.get("role").is_some_and(Value::is_string))
            {
                return Err(ApiError::BadRequest(format!(
                    "`messages[{i}].role` is required and must be a string"
                )));
            }
        }
        Some(_) => return Err(ApiError::BadRequest("`messages` must be an array".into())),
    }
    let model = match body.get("model") {
        None | Some(Value::Null) => "auto".to_owned(),
        Some(Value::String(s)) if s.is_empty() => "auto".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(ApiError::BadRequest("`model` must be a string".into())),
    };
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::BadRequest("`stream` must be a boolean".into())),
    };
    let positive_max_tokens = body
        .get("max_tokens")
        .and_then(Value::as_u64)
        .is_some_and(|n| n > 0);
    if format == Format::Anthropic && !positive_max_tokens {
        return Err(ApiError::BadRequest(
            "`max_tokens` is required and must be a positive integer".into(),
        ));
    }
    Ok(ChatRequest {
        body,
        raw: Some(bytes),
        model,
        stream,
        passthrough: Default::default(),
    })
}
