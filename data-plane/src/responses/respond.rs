//! The app's Responses answer from a provider's: relayed as it is from a provider that
//! speaks the Responses API, translated from Chat Completions or Anthropic otherwise.
//! Usage is read in the provider's own shape.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::Value;

use super::Upstream;
use crate::{
    body::{Body, full},
    error::ApiError,
    outcome::{Ending, Pending},
    relay,
    translate::{self, StreamTranslator, Usage, responses as tr},
};

/// What shapes the reply to one successful attempt.
pub struct Reply<'a> {
    pub upstream: Upstream,
    /// The model a translated answer names.
    pub client_model: &'a str,
    pub idle: Duration,
    pub attempt_started: Instant,
}

/// Relays a streamed answer event by event as Responses events.
pub fn streamed(
    resp: reqwest::Response,
    reply: &Reply<'_>,
    on_id: Option<tr::OnResponseId>,
    pending: Pending,
) -> Response<Body> {
    let translator: Box<dyn StreamTranslator> = match reply.upstream {
        Upstream::Native => tr::responses_passthrough(on_id),
        Upstream::Chat => tr::chat_stream_to_responses(reply.client_model, on_id),
        Upstream::Anthropic => tr::anthropic_stream_to_responses(reply.client_model, on_id),
    };
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

/// Reads a whole answer and relays it as a Responses object.
pub async fn whole(
    resp: reqwest::Response,
    reply: &Reply<'_>,
    on_id: Option<tr::OnResponseId>,
    pending: Pending,
) -> Result<Response<Body>, ApiError> {
    let status = resp.status();
    let (body, mut pending) =
        crate::respond::read_whole(resp, reply.idle, reply.attempt_started, pending).await?;
    let Ok(parsed) = serde_json::from_slice::<Value>(&body) else {
        pending.finish(Usage::default(), Ending::Failed);
        return Err(ApiError::BadGateway("provider response is not JSON".into()));
    };
    pending.set_finish_reason(match reply.upstream {
        Upstream::Native => translate::responses_finish_reason(&parsed),
        Upstream::Chat => translate::finish_reason_of(crate::format::Format::OpenAi, &parsed),
        Upstream::Anthropic => {
            translate::finish_reason_of(crate::format::Format::Anthropic, &parsed)
        }
    });
    let (usage, answer) = match reply.upstream {
        // The provider's own object, bytes untouched (reasoning items included).
        Upstream::Native => (tr::usage_from_responses(&parsed), None),
        Upstream::Chat => (
            translate::usage_from_openai(&parsed),
            Some(tr::chat_to_responses_response(&parsed, reply.client_model)),
        ),
        Upstream::Anthropic => {
            let chat = translate::anthropic_to_openai_response(&parsed, reply.client_model);
            (
                translate::usage_from_anthropic(&parsed),
                Some(tr::chat_to_responses_response(&chat, reply.client_model)),
            )
        }
    };
    let id = answer.as_ref().unwrap_or(&parsed)["id"].as_str();
    if let (Some(mut on_id), Some(id)) = (on_id, id) {
        on_id(id);
    }
    let body = match &answer {
        Some(v) => Bytes::from(serde_json::to_vec(v).unwrap_or_default()),
        None => body,
    };
    pending.finish(usage, Ending::Completed);
    let mut r = Response::new(full(body));
    *r.status_mut() = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::OK);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}
