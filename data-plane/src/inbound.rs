//! Reads what the app sent: Keel's headers, the body (within the size limit)
//! and the few fields of it routing needs. The body is scanned once.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::Body as _;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::Value;

use crate::{
    chat_body::{ChatBody, ChatView},
    error::ApiError,
    facts::{BodyFacts, FactsCache},
    format::Format,
    scan::Messages,
    state::AppState,
};

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
    check_name("X-Conversation-ID", conversation_id.as_deref())?;
    let profile = text("x-router-profile")?.map(|p| p.to_ascii_uppercase());
    check_name("X-Router-Profile", profile.as_deref())?;
    Ok(KeelHeaders {
        conversation_id,
        profile,
    })
}

/// The one name rule of [`keel::names`], as a 400 naming the field.
pub(crate) fn check_name(what: &'static str, name: Option<&str>) -> Result<(), ApiError> {
    keel::names::check(what, name.unwrap_or_default())
        .map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// What every API request starts with, checked: its head, Keel's headers
/// and its whole body.
pub struct Accepted {
    pub parts: http::request::Parts,
    pub keel: KeelHeaders,
    pub bytes: Bytes,
}

/// Checks the app's credential and Keel's headers, then reads the body
/// within the sidecar's size and idle limits.
pub async fn accept(state: &AppState, req: http::Request<Incoming>) -> Result<Accepted, ApiError> {
    let (parts, body) = req.into_parts();
    state.authorize(&parts.headers)?;
    let keel = keel_headers(&parts.headers)?;
    let bytes = read_body(
        body,
        state.config.max_body_bytes,
        state.config.body_idle_timeout,
    )
    .await?;
    Ok(Accepted { parts, keel, bytes })
}

/// Reads the whole request body, refusing more than `limit` bytes and a
/// silence longer than `idle` between its pieces (408).
pub async fn read_body(body: Incoming, limit: usize, idle: Duration) -> Result<Bytes, ApiError> {
    let mut body = Limited::new(body, limit);
    let mut bytes = BytesMut::new();
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => {
                return Err(ApiError::RequestTimeout(format!(
                    "no request body data for {} s",
                    idle.as_secs_f32()
                )));
            }
            Ok(None) => return Ok(bytes.freeze()),
            Ok(Some(Ok(frame))) => frame,
            Ok(Some(Err(e))) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(ApiError::PayloadTooLarge(limit));
            }
            Ok(Some(Err(e))) => {
                return Err(ApiError::BadRequest(format!(
                    "cannot read request body: {e}"
                )));
            }
        };
        if let Ok(data) = frame.into_data() {
            if bytes.is_empty() && body.size_hint().exact() == Some(0) {
                return Ok(data); // all of it in one piece: no copy
            }
            bytes.extend_from_slice(&data);
        }
    }
}

/// A chat request, scanned and checked (chat_body.rs).
pub struct ChatRequest {
    pub body: ChatBody,
    /// The facts of its parts, each message's among them (facts.rs).
    pub facts: BodyFacts,
    /// Requested model (`auto` when absent).
    pub model: String,
    pub stream: bool,
    /// The app's API headers and query string (passthrough.rs).
    pub passthrough: crate::passthrough::Passthrough,
}

/// Scans and checks a chat request body of `format`; each message's facts
/// come from `cache`, so only messages new to it are parsed.
pub fn parse_chat(
    format: Format,
    bytes: Bytes,
    cache: &FactsCache,
) -> Result<ChatRequest, ApiError> {
    let body = ChatBody::scan(bytes)
        .map_err(|e| ApiError::BadRequest(format!("request body is not a JSON object: {e}")))?;
    match body.messages() {
        Messages::Absent => return Err(ApiError::BadRequest("`messages` is required".into())),
        Messages::Other => {
            return Err(ApiError::BadRequest("`messages` must be an array".into()));
        }
        Messages::Array(m) if m.is_empty() => {
            return Err(ApiError::BadRequest("`messages` must not be empty".into()));
        }
        Messages::Array(_) => {}
    }
    let facts = BodyFacts::of_scanned(&body, cache);
    if let Some(i) = facts.messages.iter().position(|m| m.role.is_none()) {
        return Err(ApiError::BadRequest(format!(
            "`messages[{i}].role` is required and must be a string"
        )));
    }
    let model = match body.value("model").as_deref() {
        None | Some(Value::Null) => "auto".to_owned(),
        Some(Value::String(s)) if s.is_empty() => "auto".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(ApiError::BadRequest("`model` must be a string".into())),
    };
    check_name("`model`", Some(&model))?;
    let stream = match body.value("stream").as_deref() {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::BadRequest("`stream` must be a boolean".into())),
    };
    let positive_max_tokens = body
        .value("max_tokens")
        .and_then(|v| v.as_u64())
        .is_some_and(|n| n > 0);
    if format == Format::Anthropic && !positive_max_tokens {
        return Err(ApiError::BadRequest(
            "`max_tokens` is required and must be a positive integer".into(),
        ));
    }
    Ok(ChatRequest {
        body,
        facts,
        model,
        stream,
        passthrough: Default::default(),
    })
}
