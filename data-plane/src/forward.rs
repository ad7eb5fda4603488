//! Forwarding with fallbacks: the decision's targets in order, until one
//! answers. Before the first byte only. A 429 is about a key (try the next
//! key, and park this one for its `Retry-After`); a 5xx, refused connection
//! or timeout is about a provider (skip the rest of that provider's keys).
//! A 4xx other than 429 is the request's own fault: no other target helps.

use std::time::Instant;

use keel::pb;

use crate::{
    error::ApiError,
    format::Format,
    inbound::ChatRequest,
    outcome::Pending,
    rewrite::{self, Prepared},
    state::{AppState, Limits},
    upstream::{self, AttemptError},
};

/// A provider's answer head, ready to relay.
pub struct Forwarded<'a> {
    pub resp: reqwest::Response,
    pub target: &'a pb::Target,
    pub prepared: Prepared,
    pub attempt_started: Instant,
}

/// Why no target answered.
pub enum Failed {
    /// The request itself is at fault (translation, or the provider's 4xx).
    Request(ApiError),
    /// The last attempt's error, with the format of the provider that sent it.
    Upstream(AttemptError, Format),
    /// Every target tried was rate limited; the app may retry after this many
    /// seconds.
    RateLimited { retry_after_secs: u64 },
    /// The decision named no usable target.
    NoTarget,
}

/// Tries the decision's targets in order.
pub async fn forward<'a>(
    state: &AppState,
    format: Format,
    chat: &mut ChatRequest,
    decision: &'a pb::Decision,
    limits: &Limits,
    wants_usage: bool,
    pending: &mut Pending,
) -> Result<Forwarded<'a>, Failed> {
    let targets: Vec<&pb::Target> = decision.target.iter().chain(&decision.fallbacks).collect();
    let mut failed_providers: Vec<&str> = Vec::new();
    let mut attempts = 0;
    let mut last: Option<(AttemptError, Format)> = None;
    let mut all_rate_limited = true;
    let mut soonest_retry: Option<u64> = None;
    for (i, target) in targets.iter().copied().enumerate() {
        if attempts >= limits.max_attempts {
            break;
        }
        if failed_providers.contains(&target.provider.as_str()) {
            continue;
        }
        // A cooling key is skipped while a later target may serve instead.
        let later = targets[i + 1..]
            .iter()
            .any(|t| !failed_providers.contains(&t.provider.as_str()));
        if let Some(wait) = state.cooldowns.remaining(&target.key_ref)
            && later
        {
            let secs = wait.as_secs().max(1);
            soonest_retry = Some(soonest_retry.map_or(secs, |s| s.min(secs)));
            continue;
        }
        let attempt_started = Instant::now();
        let upstream_format = Format::of_target(target.wire_format);
        let Some(secret) = state.keys.get(&target.key_ref) else {
            let e = AttemptError::MissingKey {
                env_var: keel::keys::env_var_for(&target.key_ref),
            };
            pending.attempt(attempt(target, &e, attempt_started));
            all_rate_limited = false;
            last = Some((e, upstream_format));
            continue;
        };
        let prepared = rewrite::prepare(
            format,
            &mut chat.body,
            chat.raw.as_deref(),
            target,
            chat.stream,
            wants_usage,
            state.config.default_max_tokens,
        )
        .map_err(Failed::Request)?;
        attempts += 1;
        match crate::overhead::waiting(upstream::send(
            &state.http,
            target,
            &secret,
            prepared.body.clone(),
            limits.first_byte,
        ))
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
                return Ok(Forwarded {
                    resp,
                    target,
                    prepared,
                    attempt_started,
                });
            }
            Err(e) => {
                tracing::info!(provider = %target.provider, model = %target.model, class = e.class(), "upstream attempt failed");
                pending.attempt(attempt(target, &e, attempt_started));
                match &e {
                    AttemptError::Client { .. } => {
                        return Err(Failed::Upstream(e, upstream_format));
                    }
                    AttemptError::RateLimited { retry_after, .. } => {
                        state.cooldowns.rate_limited(&target.key_ref, *retry_after);
                        let secs = retry_after.unwrap_or(1).max(1);
                        soonest_retry = Some(soonest_retry.map_or(secs, |s| s.min(secs)));
                    }
                    _ => {
                        all_rate_limited = false;
                        failed_providers.push(&target.provider);
                    }
                }
                last = Some((e, upstream_format));
            }
        }
    }
    match last {
        None if soonest_retry.is_some() => Err(Failed::RateLimited {
            retry_after_secs: soonest_retry.unwrap_or(1),
        }),
        None => Err(Failed::NoTarget),
        Some(_) if all_rate_limited => Err(Failed::RateLimited {
            retry_after_secs: soonest_retry.unwrap_or(1),
        }),
        Some((e, f)) => Err(Failed::Upstream(e, f)),
    }
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
