//! The app's response from a provider's: streamed or whole, translated when
//! the app and the provider speak different APIs. Usage is always read in the
//! provider's own shape.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::Value;

use crate::{
    body::{Body, full},
    error::ApiError,
    format::Format,
    outcome::{Ending, Pending},
    relay,
    translate::{self, StreamTranslator, Usage},
};

/// What shapes the reply to one successful attempt.
pub struct Reply<'a> {
    /// The API the app called.
    pub caller: Format,
    /// The API the provider spoke.
    pub upstream: Format,
    /// The model a translated answer names.
    pub client_model: &'a str,
    pub idle: Duration,
    pub attempt_started: Instant,
}

/// Relays a streamed response event by event. `wants_usage`: the app asked
/// for OpenAI's usage chunk; `strip_usage_chunk`: Keel asked for it instead.
pub fn streamed(
    resp: reqwest::Response,
    reply: &Reply<'_>,
    wants_usage: bool,
    strip_usage_chunk: bool,
    pending: Pending,
) -> Response<Body> {
    let translator = stream_translator(reply, wants_usage, strip_usage_chunk);
    let pending = pending.streamed();
    let body = relay::stream_body(resp, translator, reply.idle, pending, reply.attempt_started);
    let mut r = Response::new(body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// Reads the provider's stream and writes the app's.
fn stream_translator(
    reply: &Reply<'_>,
    wants_usage: bool,
    strip_usage_chunk: bool,
) -> Box<dyn StreamTranslator> {
    match (reply.upstream, reply.caller) {
        (Format::Anthropic, Format::OpenAi) => {
            translate::anthropic_stream_to_openai(reply.client_model, wants_usage)
        }
        (Format::OpenAi, Format::Anthropic) => {
            translate::openai_stream_to_anthropic(reply.client_model)
        }
        (Format::OpenAi, Format::OpenAi) | (Format::Anthropic, Format::Anthropic) => {
            translate::passthrough(reply.caller, strip_usage_chunk)
        }
    }
}

/// Reads the body of a non-streamed answer within the idle timeout (time
/// spent waiting on the provider, not Keel's overhead). A body that breaks
/// off or times out settles `pending` as broken and is a 502 or 504.
pub(crate) async fn read_whole(
    resp: reqwest::Response,
    idle: std::time::Duration,
    attempt_started: std::time::Instant,
    mut pending: Pending,
) -> Result<(Bytes, Pending), ApiError> {
    let read = tokio::time::timeout(idle, resp.bytes());
    let error = match crate::overhead::waiting(read).await {
        Ok(Ok(body)) => {
            pending.first_byte(attempt_started);
            return Ok((body, pending));
        }
        Ok(Err(e)) => {
            ApiError::BadGateway(format!("provider response broke off: {}", e.without_url()))
        }
        Err(_) => ApiError::GatewayTimeout("provider response body timed out".into()),
    };
    pending.finish(Usage::default(), Ending::Broken);
    Err(error)
}

/// Reads a non-streamed response (its head is already here) and relays it,
/// translated when the APIs differ.
pub async fn whole(
    resp: reqwest::Response,
    reply: &Reply<'_>,
    pending: Pending,
) -> Result<Response<Body>, ApiError> {
    let status = resp.status();
    let (body, mut pending) = read_whole(resp, reply.idle, reply.attempt_started, pending).await?;
    // Same format: the body is relayed as is and only its usage is read, so
    // it is not parsed into a whole `Value`.
    let parsed = (reply.upstream != reply.caller)
        .then(|| serde_json::from_slice::<Value>(&body).ok())
        .flatten();
    // Usage is read in the upstream's own shape, before any translation.
    let usage_fields = if reply.upstream == reply.caller {
        usage_fields(&body)
    } else {
        None
    };
    let usage = parsed
        .as_ref()
        .or(usage_fields.as_ref())
        .map_or_else(Usage::default, |v| match reply.upstream {
            Format::OpenAi => translate::usage_from_openai(v),
            Format::Anthropic => translate::usage_from_anthropic(v),
        });
    pending.set_finish_reason(
        parsed
            .as_ref()
            .or(usage_fields.as_ref())
            .and_then(|v| translate::finish_reason_of(reply.upstream, v)),
    );
    let body = match (reply.upstream, reply.caller, parsed) {
        (Format::OpenAi, Format::OpenAi, _) | (Format::Anthropic, Format::Anthropic, _) => body,
        (_, _, None) => {
            pending.finish(usage, Ending::Broken);
            return Err(ApiError::BadGateway(
                "provider response is not JSON; it cannot be translated".into(),
            ));
        }
        (Format::Anthropic, Format::OpenAi, Some(v)) => json_bytes(
            &translate::anthropic_to_openai_response(&v, reply.client_model),
        ),
        (Format::OpenAi, Format::Anthropic, Some(v)) => json_bytes(
            &translate::openai_to_anthropic_response(&v, reply.client_model),
        ),
    };
    // Whole answers carry usage; without it, the answer's size stands in.
    pending.relayed(u32::try_from(body.len() / 4).unwrap_or(u32::MAX));
    pending.finish(usage, Ending::Completed);
    let mut r = Response::new(full(body));
    *r.status_mut() = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::OK);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

/// The top-level members of a response object that the usage readers look
/// at (`usage`, Anthropic's `message.usage`, or the counters of a bare usage
/// object) and the finish reason (Anthropic's `stop_reason`, each OpenAI
/// choice's `finish_reason` only); everything else is skipped without being
/// built.
#[derive(serde::Deserialize)]
struct UsageFields {
    stop_reason: Option<Value>,
    choices: Option<Vec<ChoiceEnd>>,
    usage: Option<Value>,
    message: Option<Value>,
    prompt_tokens: Option<Value>,
    completion_tokens: Option<Value>,
    prompt_tokens_details: Option<Value>,
    input_tokens: Option<Value>,
    output_tokens: Option<Value>,
    cache_read_input_tokens: Option<Value>,
    cache_creation_input_tokens: Option<Value>,
}

/// An OpenAI choice, read for its finish reason only.
#[derive(serde::Deserialize)]
struct ChoiceEnd {
    finish_reason: Option<Value>,
}

/// A JSON object holding only the members of `body` that carry usage.
fn usage_fields(body: &[u8]) -> Option<Value> {
    // A struct would also accept a JSON array; only objects carry usage.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return None;
    }
    let f: UsageFields = serde_json::from_slice(body).ok()?;
    let choices = f.choices.map(|c| {
        Value::Array(
            c.into_iter()
                .map(|c| serde_json::json!({ "finish_reason": c.finish_reason }))
                .collect(),
        )
    });
    let members = [
        ("stop_reason", f.stop_reason),
        ("choices", choices),
        ("usage", f.usage),
        ("message", f.message),
        ("prompt_tokens", f.prompt_tokens),
        ("completion_tokens", f.completion_tokens),
        ("prompt_tokens_details", f.prompt_tokens_details),
        ("input_tokens", f.input_tokens),
        ("output_tokens", f.output_tokens),
        ("cache_read_input_tokens", f.cache_read_input_tokens),
        ("cache_creation_input_tokens", f.cache_creation_input_tokens),
    ];
    Some(Value::Object(
        members
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_owned(), v?)))
            .collect(),
    ))
}

fn json_bytes(v: &Value) -> Bytes {
    // Serializing a `Value` into memory cannot fail.
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

#[cfg(test)]
mod tests;
