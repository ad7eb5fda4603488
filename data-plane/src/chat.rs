//! The chat request path, top to bottom: accept → parse → features → route
//! → rewrite → forward (with fallbacks) → respond (relay) → report.

use std::{sync::Arc, time::Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use keel::pb;
use serde_json::Value;

use crate::{
    body::Body,
    chat_body::ChatBody,
    error::ApiError,
    features,
    format::Format,
    forward::{self, Failed},
    headers::decorate,
    identity, inbound,
    outcome::{Ending, Pending},
    passthrough::Passthrough,
    respond, rewrite, side,
    state::AppState,
    translate::{self, Usage},
    upstream::AttemptError,
};

/// Serves one chat request in `format` (the API the app called).
pub async fn handle(
    state: Arc<AppState>,
    req: Request<Incoming>,
    format: Format,
    slot: tokio::sync::OwnedSemaphorePermit,
) -> Result<Response<Body>, ApiError> {
    let started = Instant::now();
    let inbound::Accepted {
        parts,
        keel: keel_headers,
        bytes,
    } = inbound::accept(&state, req).await?;
    let step = Instant::now();
    let mut chat = inbound::parse_chat(format, bytes, &state.facts)?;
    chat.passthrough = Passthrough::from_parts(format, &parts);
    state.metrics.step("parse", step.elapsed());
    let step = Instant::now();
    let features = features::from_facts(&chat.facts, &chat.body, chat.stream);
    state.metrics.step("features", step.elapsed());
    let prompt_tokens = features.estimated_prompt_tokens;
    let identity = identity::identify(
        keel_headers.conversation_id,
        &parts.headers,
        &chat.body,
        &chat.facts,
    );
    let side_call = side::side_call(
        &parts.headers,
        &features,
        &identity.conversation_id,
        &state.main_lines,
    );
    // A side call is no step of a run (identity/runs.rs).
    let placed = if side_call.is_empty() {
        let hashes = chat.facts.messages.iter().map(|m| m.hash);
        state.runs.place(identity, hashes)
    } else {
        identity::runs::Placed::as_is(identity)
    };
    let identity = placed.identity;
    let tool_count = features.tool_count;
    let step = Instant::now();
    let fingerprints = fingerprints(&state, format, &chat.body);
    state.metrics.step("fingerprint", step.elapsed());

    let step = Instant::now();
    let routed = state
        .route
        .route(pb::RouteRequest {
            tenant: state.config.tenant.clone(),
            conversation_id: identity.conversation_id.clone(),
            session_source: identity.source as i32,
            profile: keel_headers.profile.unwrap_or_default(),
            // Kept: a translated answer names the model the app asked for.
            model: chat.model.clone(),
            features: Some(features),
            fingerprints,
            degraded_model: String::new(),
            side_call,
            repeat_turn: placed.repeat,
            known_pin: String::new(),
        })
        .await?;
    state.metrics.step("route", step.elapsed());
    if let Some(step) = placed.step {
        state.runs.commit(step);
    }
    let decision = routed.decision;
    state
        .main_lines
        .decided(&identity.conversation_id, tool_count, &decision);
    let mut pending = pending(
        &state,
        &decision,
        identity.conversation_id,
        routed.degraded,
        (started, slot),
        prompt_tokens,
    );

    rewrite::inject(format, &mut chat.body, &decision.inject)?;
    let wants_usage = rewrite::app_wants_usage(&chat.body);
    let limits = state.limits(decision.limits.as_ref());
    let forwarded = forward::forward(
        &state,
        format,
        &mut chat,
        &decision,
        &limits,
        wants_usage,
        &mut pending,
    )
    .await;
    state
        .metrics
        .fallbacks(pending.attempts().saturating_sub(1) as u64);
    let forwarded = match forwarded {
        Ok(f) => f,
        Err(failed) => {
            pending.finish(Usage::default(), Ending::Failed);
            return Err(to_api_error(failed, format));
        }
    };
    let target = forwarded.target;
    let reply = respond::Reply {
        caller: format,
        upstream: Format::of_target(target.wire_format),
        // The catalog model that served, also after a fallback to another.
        client_model: &target.model,
        idle: limits.idle,
        attempt_started: forwarded.attempt_started,
    };
    let mut response = if chat.stream {
        respond::streamed(
            forwarded.resp,
            &reply,
            wants_usage,
            forwarded.prepared.strip_usage_chunk,
            pending,
        )
    } else {
        respond::whole(forwarded.resp, &reply, pending).await?
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

/// The outcome a routed request will report: held with its concurrency
/// slot, and counted from what was relayed if its usage never arrives (a
/// stream cut short). Counts a degraded decision.
pub(crate) fn pending(
    state: &AppState,
    decision: &pb::Decision,
    conversation_id: String,
    degraded: bool,
    (started, slot): (Instant, tokio::sync::OwnedSemaphorePermit),
    prompt_tokens: u32,
) -> Pending {
    if degraded {
        state.metrics.degraded();
    }
    Pending::new(
        state.reporter.clone(),
        pb::Outcome {
            decision_id: decision.decision_id.clone(),
            tenant: state.config.tenant.clone(),
            conversation_id,
            profile: decision.profile.clone(),
            degraded,
            started_at_unix_ms: unix_ms(),
            // Names the decision record the report completes.
            turn: decision.turn,
            ..Default::default()
        },
        started,
    )
    .holding(Some(slot))
    .estimating(prompt_tokens)
}

/// The app-facing error once no target could serve the request; a provider's
/// own error body is rendered from its format in the `caller`'s.
pub(crate) fn to_api_error(failed: Failed, caller: Format) -> ApiError {
    let (e, upstream) = match failed {
        Failed::Request(e) => return e,
        Failed::NoTarget => {
            return ApiError::Unavailable("the decision named no usable target".into());
        }
        Failed::KeysRejected => {
            return ApiError::BadGateway(
                "the provider rejected every key this gateway holds for it".into(),
            );
        }
        Failed::RateLimited { retry_after_secs } => {
            return ApiError::RateLimited {
                message: "every provider key for this model is rate limited".into(),
                retry_after_secs: Some(retry_after_secs),
            };
        }
        Failed::Upstream(e, upstream) => (e, upstream),
    };
    match e {
        AttemptError::MissingKey { env_var } => ApiError::Unavailable(format!(
            "no provider key on this host for the chosen target (set {env_var})"
        )),
        AttemptError::Connect(msg) => {
            ApiError::BadGateway(format!("cannot reach the provider: {msg}"))
        }
        AttemptError::Timeout => {
            ApiError::GatewayTimeout("the provider did not answer in time".into())
        }
        // This host's key, not the app's credential: never relayed as 401.
        AttemptError::KeyRejected { .. } => ApiError::BadGateway(
            "the provider rejected the key this gateway holds for it; the others failed".into(),
        ),
        // Reached only when an earlier target failed otherwise: the last key
        // tried was rate limited, not necessarily every key.
        AttemptError::RateLimited { retry_after, .. } => ApiError::RateLimited {
            message: "the provider rate limited the last key tried; the others failed".into(),
            retry_after_secs: Some(retry_after.unwrap_or(1)),
        },
        AttemptError::Server { status, body } | AttemptError::Client { status, body } => {
            let status = status.as_u16();
            // Same API: the provider's body as it is, unless it is not JSON
            // (an HTML error page); every error the app sees is JSON.
            let relay_as_is = upstream == caller && serde_json::from_slice::<Value>(&body).is_ok();
            ApiError::Upstream {
                status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
                body: if relay_as_is {
                    body
                } else {
                    Bytes::from(translate::translate_error_body(
                        upstream, caller, status, &body,
                    ))
                },
            }
        }
    }
}

/// Per-turn fingerprints of the tail of the history, for loop detection: the
/// window and the message before it, as the app wrote them. Messages seen on
/// earlier turns come from the shared cache without a parse, so a turn costs
/// about its new messages.
fn fingerprints(state: &AppState, format: Format, body: &ChatBody) -> Vec<pb::TurnFingerprint> {
    let window = state.config.fingerprint_window;
    if window == 0 {
        return Vec::new();
    }
    let (offset, tail) = body.last_message_texts(window + 1);
    let format = match format {
        Format::OpenAi => keel::fingerprint::Format::OpenAi,
        Format::Anthropic => keel::fingerprint::Format::Anthropic,
    };
    state
        .fingerprints
        .fingerprint_tail_proto(format, &tail, offset, window)
}

pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
