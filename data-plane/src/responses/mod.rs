//! The OpenAI Responses API (`POST /v1/responses`), top to bottom like a chat request:
//! accept → parse → features → route → forward (natively to a provider with
//! `responses = true`, else translated to Chat Completions or Anthropic Messages) →
//! respond → report. Errors are in the OpenAI error shape, which the Responses API
//! shares.

mod chains;
mod features;
mod identity;
mod inbound;
mod respond;

use std::{sync::Arc, time::Instant};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use keel::pb;

pub use chains::Chains;

use crate::{
    body::Body,
    chat::{self, to_api_error},
    error::ApiError,
    format::Format,
    forward,
    headers::decorate,
    inbound as chat_inbound,
    outcome::Ending,
    rewrite::{self, Prepared},
    state::AppState,
    translate::{self, Usage},
};

use inbound::ResponsesRequest;

/// The API a target is spoken to in, for a Responses request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Upstream {
    /// The provider serves `POST /responses` itself.
    Native,
    /// OpenAI Chat Completions, translated.
    Chat,
    /// Anthropic Messages, translated.
    Anthropic,
}

impl Upstream {
    pub fn of(target: &pb::Target) -> Self {
        match Format::of_target(target.wire_format) {
            Format::Anthropic => Self::Anthropic,
            Format::OpenAi if target.responses_api => Self::Native,
            Format::OpenAi => Self::Chat,
        }
    }
}

/// Serves one Responses request.
pub async fn handle(
    state: Arc<AppState>,
    req: Request<Incoming>,
    slot: tokio::sync::OwnedSemaphorePermit,
) -> Result<Response<Body>, ApiError> {
    let started = Instant::now();
    let chat_inbound::Accepted {
        parts,
        keel: keel_headers,
        bytes,
    } = chat_inbound::accept(&state, req).await?;
    let mut request = inbound::parse(bytes)?;
    let features = features::compute(&request.body, request.stream);
    let prompt_tokens = features.estimated_prompt_tokens;
    let identity = identity::identify(
        keel_headers.conversation_id,
        &parts.headers,
        &request.body,
        &state.chains,
    );
    let routed = state
        .route
        .route(pb::RouteRequest {
            tenant: state.config.tenant.clone(),
            conversation_id: identity.conversation_id.clone(),
            session_source: identity.source as i32,
            profile: keel_headers.profile.unwrap_or_default(),
            model: request.model.clone(),
            features: Some(features),
            fingerprints: features::fingerprints(&state, &request.body),
            degraded_model: String::new(),
            // Codex's history lives at the provider (`previous_response_id`)
            // or grows with each item; its side calls name a small model,
            // which the control plane recognises under a locked profile.
            ..Default::default()
        })
        .await?;
    let decision = routed.decision;
    let conversation: Arc<str> = Arc::from(identity.conversation_id.as_str());
    let mut pending = chat::pending(
        &state,
        &decision,
        identity.conversation_id,
        routed.degraded,
        (started, slot),
        prompt_tokens,
    );

    if inbound::inject(&mut request.body, &decision.inject) {
        request.raw = None;
    }
    let limits = state.limits(decision.limits.as_ref());
    let default_max_tokens = state.config.default_max_tokens;
    let forwarded = forward::forward_with(
        &state,
        &decision,
        &limits,
        &mut pending,
        Format::OpenAi,
        None,
        |t| prepare(&mut request, t, default_max_tokens),
    )
    .await;
    state
        .metrics
        .fallbacks(pending.attempts().saturating_sub(1) as u64);
    let forwarded = match forwarded {
        Ok(f) => f,
        Err(failed) => {
            pending.finish(Usage::default(), Ending::Failed);
            return Err(to_api_error(failed, Format::OpenAi));
        }
    };
    let target = forwarded.target;
    // Later requests that only name this response stay on the conversation.
    let on_id: Option<translate::responses::OnResponseId> = (!conversation.is_empty()).then(|| {
        let state = Arc::clone(&state);
        let source = identity.source;
        Box::new(move |id: &str| state.chains.remember(id, &conversation, source)) as _
    });
    let reply = respond::Reply {
        upstream: Upstream::of(target),
        client_model: &target.model,
        idle: limits.idle,
        attempt_started: forwarded.attempt_started,
    };
    let mut response = if request.stream {
        respond::streamed(forwarded.resp, &reply, on_id, pending)
    } else {
        respond::whole(forwarded.resp, &reply, on_id, pending).await?
    };
    decorate(
        response.headers_mut(),
        &decision,
        target,
        identity.source,
        routed.degraded,
    );
    Ok(response)
}

/// The body (and endpoint) for `target`: the app's own body for a provider that speaks
/// the Responses API, a translation otherwise.
fn prepare(
    request: &mut ResponsesRequest,
    target: &pb::Target,
    default_max_tokens: u32,
) -> Result<Prepared, ApiError> {
    let model = target.upstream_model.as_str();
    let upstream = Upstream::of(target);
    if upstream == Upstream::Native {
        let spliced = request
            .raw
            .as_deref()
            .and_then(|raw| rewrite::splice::with_model(raw, model, false));
        let body = match spliced {
            Some(b) => Bytes::from(b),
            None => {
                request.body.insert("model".into(), model.into());
                rewrite::encode(&request.body)?
            }
        };
        return Ok(Prepared {
            body,
            strip_usage_chunk: false,
            url: Some(format!("{}/responses", target.base_url)),
        });
    }
    if let Some(previous) = &request.previous_response_id {
        return Err(ApiError::BadRequest(format!(
            "`previous_response_id` ({previous}) cannot be honoured: this request is served by \
             `{}` through provider `{}`, which speaks {} and keeps no stored responses, so the \
             earlier turns are not available to it. Send the whole conversation in `input` \
             instead (as with `store: false`), or serve this model from a provider with \
             `responses = true`",
            target.model,
            target.provider,
            match upstream {
                Upstream::Anthropic => "Anthropic Messages",
                _ => "OpenAI Chat Completions",
            },
        )));
    }
    let chat = translate::responses::responses_to_chat_request(&request.body, model)?;
    let body = match upstream {
        Upstream::Anthropic => rewrite::encode(&translate::openai_to_anthropic_request(
            &chat,
            model,
            default_max_tokens,
        )?)?,
        _ => rewrite::encode(&chat)?,
    };
    Ok(Prepared {
        body,
        strip_usage_chunk: false,
        url: None,
    })
}
