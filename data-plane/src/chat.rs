//! The chat request path, top to bottom: accept → parse → features → route
//! → rewrite → forward (with fallbacks) → relay → report.

use std::{sync::Arc, time::Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use keel::pb;
use serde_json::Value;

use crate::{
    body::{Body, full},
    error::ApiError,
    features,
    format::Format,
    headers::decorate,
    inbound,
    outcome::Pending,
    relay, rewrite,
    state::AppState,
    translate::{Passthrough, StreamTranslator, Usage, usage_from_anthropic, usage_from_openai},
    upstream::{self, AttemptError},
};

/// Serves one chat request in `format` (the API the app called).
pub async fn handle(
    state: Arc<AppState>,
    req: Request<Incoming>,
    format: Format,
) -> Result<Response<Body>, ApiError> {
    let started = Instant::now();
    state.authorize(req.headers())?;
    let keel_headers = inbound::keel_headers(req.headers())?;
    let bytes = inbound::read_body(req.into_body(), state.config.max_body_bytes).await?;
    let mut chat = inbound::parse_chat(format, &bytes)?;
    drop(bytes);
    let features = features::compute(format, &chat.body, chat.stream);

    let conversation_id = keel_headers.conversation_id.unwrap_or_default();
    let session_source = if conversation_id.is_empty() {
        pb::SessionSource::None
    } else {
        pb::SessionSource::Header
    };
    let routed = state
        .route
        .route(pb::RouteRequest {
            tenant: state.config.tenant.clone(),
            conversation_id: conversation_id.clone(),
            session_source: session_source as i32,
            profile: keel_headers.profile.unwrap_or_default(),
            model: std::mem::take(&mut chat.model),
            features: Some(features),
            fingerprints: Vec::new(),
        })
        .await?;
    let decision = routed.decision;
    let mut pending = Pending::new(
        state.reporter.clone(),
        pb::Outcome {
            decision_id: decision.decision_id.clone(),
            tenant: state.config.tenant.clone(),
            conversation_id,
            profile: decision.profile.clone(),
            degraded: routed.degraded,
            started_at_unix_ms: unix_ms(),
            ..Default::default()
        },
        started,
    );

    rewrite::inject(format, &mut chat.body, &decision.inject);
    let wants_usage = rewrite::app_wants_usage(&chat.body);
    let limits = state.limits(decision.limits.as_ref());
    let targets = decision
        .target
        .iter()
        .chain(decision.fallbacks.iter())
        .take(limits.max_attempts);
    let mut last_error: Option<AttemptError> = None;
    for target in targets {
        let attempt_started = Instant::now();
        let Some(secret) = state.keys.get(&target.key_ref) else {
            let e = AttemptError::MissingKey {
                env_var: keel::keys::env_var_for(&target.key_ref),
            };
            pending.attempt(attempt(target, &e, attempt_started));
            last_error = Some(e);
            continue;
        };
        let prepared = rewrite::prepare(format, &mut chat.body, target, chat.stream, wants_usage)?;
        match upstream::send(
            &state.http,
            target,
            &secret,
            prepared.body,
            limits.first_byte,
        )
        .await
        {
            Ok(resp) => {
                pending.attempt(pb::Attempt {
                    target: Some(target.clone()),
                    status: u32::from(resp.status().as_u16()),
                    latency_ms: upstream::ms_since(attempt_started),
                    rate_limit_headers: upstream::rate_limit_headers(resp.headers()),
                    ..Default::default()
                });
                pending.set_model(&target.model);
                let mut response = if chat.stream {
                    let translator: Box<dyn StreamTranslator> =
                        Box::new(Passthrough::new(format, prepared.strip_usage_chunk));
                    let body =
                        relay::stream_body(resp, translator, limits.idle, pending, attempt_started);
                    let mut r = Response::new(body);
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("text/event-stream"),
                    );
                    r.headers_mut()
                        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                    r
                } else {
                    whole(resp, format, limits.idle, pending, attempt_started).await?
                };
                decorate(response.headers_mut(), &decision, target, routed.degraded);
                return Ok(response);
            }
            Err(e) => {
                tracing::info!(provider = %target.provider, model = %target.model, class = e.class(), "upstream attempt failed");
                pending.attempt(attempt(target, &e, attempt_started));
                if !e.retryable() {
                    pending.finish(Usage::default(), false, false);
                    return Err(to_api_error(e));
                }
                last_error = Some(e);
            }
        }
    }
    pending.finish(Usage::default(), false, false);
    Err(last_error.map_or_else(
        || ApiError::Unavailable("the decision named no target".into()),
        to_api_error,
    ))
}

/// Reads a non-streamed response (its head is already here) and relays it.
async fn whole(
    resp: reqwest::Response,
    format: Format,
    idle: std::time::Duration,
    mut pending: Pending,
    attempt_started: Instant,
) -> Result<Response<Body>, ApiError> {
    let status = resp.status();
    let body: Bytes = match tokio::time::timeout(idle, resp.bytes()).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            pending.finish(Usage::default(), false, false);
            return Err(ApiError::BadGateway(format!(
                "provider response broke off: {}",
                e.without_url()
            )));
        }
        Err(_) => {
            pending.finish(Usage::default(), false, false);
            return Err(ApiError::GatewayTimeout(
                "provider response body timed out".into(),
            ));
        }
    };
    pending.first_byte(attempt_started);
    let usage = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("usage").cloned())
        .map_or_else(Usage::default, |u| match format {
            Format::OpenAi => usage_from_openai(&u),
            Format::Anthropic => usage_from_anthropic(&u),
        });
    pending.finish(usage, true, true);
    let mut r = Response::new(full(body));
    *r.status_mut() = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::OK);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

fn attempt(target: &pb::Target, e: &AttemptError, started: Instant) -> pb::Attempt {
    let rate_limit_headers = match e {
        AttemptError::RateLimited { headers, .. } => upstream::rate_limit_headers(headers),
        _ => Default::default(),
    };
    pb::Attempt {
        target: Some(target.clone()),
        status: e.status(),
        error_class: e.class().to_owned(),
        latency_ms: upstream::ms_since(started),
        ttft_ms: 0,
        rate_limit_headers,
    }
}

/// The app-facing error once no target could serve the request.
fn to_api_error(e: AttemptError) -> ApiError {
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
        AttemptError::RateLimited { retry_after, .. } => ApiError::RateLimited {
            message: "every provider key is rate limited".into(),
            retry_after_secs: Some(retry_after.unwrap_or(1)),
        },
        AttemptError::Server { status, body } | AttemptError::Client { status, body } => {
            ApiError::Upstream {
                status: StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY),
                body,
            }
        }
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
