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
    error::ApiError,
    features,
    format::Format,
    forward::{self, Failed},
    headers::decorate,
    identity, inbound,
    outcome::Pending,
    respond, rewrite,
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
    let (parts, body) = req.into_parts();
    state.authorize(&parts.headers)?;
    let keel_headers = inbound::keel_headers(&parts.headers)?;
    let bytes = inbound::read_body(body, state.config.max_body_bytes).await?;
    let mut chat = inbound::parse_chat(format, bytes)?;
    let features = features::compute(format, &chat.body, chat.stream);
    let identity = identity::identify(keel_headers.conversation_id, &parts.headers, &chat.body);

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
            fingerprints: fingerprints(&state, format, &chat.body),
            degraded_model: String::new(),
            known_pin: String::new(),
        })
        .await?;
    let decision = routed.decision;
    if routed.degraded {
        state.metrics.degraded();
    }
    let mut pending = Pending::new(
        state.reporter.clone(),
        pb::Outcome {
            decision_id: decision.decision_id.clone(),
            tenant: state.config.tenant.clone(),
            conversation_id: identity.conversation_id,
            profile: decision.profile.clone(),
            degraded: routed.degraded,
            started_at_unix_ms: unix_ms(),
            // Names the decision record the report completes.
            turn: decision.turn,
            ..Default::default()
        },
        started,
    )
    .holding(Some(slot));

    if rewrite::inject(format, &mut chat.body, &decision.inject) {
        chat.raw = None;
    }
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
            pending.finish(Usage::default(), false, false);
            return Err(to_api_error(failed, format));
        }
    };
    let target = forwarded.target;
    let reply = respond::Reply {
        caller: format,
        upstream: Format::of_target(target.wire_format),
        client_model: client_model(&state, &chat.model, target),
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

/// The model a translated answer names: the app's own choice when it named a
/// catalog model, else the catalog model that serves it (never the upstream
/// id of another API).
fn client_model<'a>(state: &AppState, requested: &'a str, target: &'a pb::Target) -> &'a str {
    if requested != target.model && state.route.catalog().has_model(requested) {
        requested
    } else {
        &target.model
    }
}

/// The app-facing error once no target could serve the request; a provider's
/// own error body is rendered from its format in the `caller`'s.
fn to_api_error(failed: Failed, caller: Format) -> ApiError {
    let (e, upstream) = match failed {
        Failed::Request(e) => return e,
        Failed::NoTarget => {
            return ApiError::Unavailable("the decision named no usable target".into());
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

/// Per-turn fingerprints of the tail of the history, for loop detection. Messages seen on
/// earlier turns come from the shared cache, so a turn costs about its new messages.
fn fingerprints(
    state: &AppState,
    format: Format,
    body: &serde_json::Map<String, Value>,
) -> Vec<pb::TurnFingerprint> {
    let window = state.config.fingerprint_window;
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return Vec::new();
    };
    if window == 0 {
        return Vec::new();
    }
    let format = match format {
        Format::OpenAi => keel::fingerprint::Format::OpenAi,
        Format::Anthropic => keel::fingerprint::Format::Anthropic,
    };
    state
        .fingerprints
        .fingerprint_proto(format, messages, window)
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
