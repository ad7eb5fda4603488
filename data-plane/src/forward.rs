//! Forwarding with fallbacks: the decision's targets in order, until one
//! answers. Before the first byte only. A 429 is about a key (try the next
//! key, and park this one for its `Retry-After`), and so is a 401/403 (the
//! provider rejected the key: parked for longer); a 5xx, refused connection
//! or timeout is about a provider (skip the rest of that provider's keys).
//! Another 4xx is the request's own fault: no other target helps.

use std::time::Instant;

use keel::pb;

use crate::{
    error::ApiError,
    format::Format,
    inbound::ChatRequest,
    outcome::Pending,
    passthrough::Passthrough,
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
    /// The provider rejected every key tried (401/403): this host's keys are
    /// at fault, not the app's credential.
    KeysRejected,
    /// The decision named no usable target.
    NoTarget,
}

/// Tries the decision's targets in order with a chat request of `format`.
pub async fn forward<'a>(
    state: &AppState,
    format: Format,
    chat: &mut ChatRequest,
    decision: &'a pb::Decision,
    limits: &Limits,
    wants_usage: bool,
    pending: &mut Pending,
) -> Result<Forwarded<'a>, Failed> {
    let prepare = |target: &pb::Target| {
        rewrite::prepare(
            format,
            &mut chat.body,
            target,
            chat.stream,
            wants_usage,
            state.config.default_max_tokens,
        )
    };
    let pass = Some(&chat.passthrough);
    forward_with(state, decision, limits, pending, format, pass, prepare).await
}

/// Tries the decision's targets in order; `prepare` writes the body (and picks the
/// endpoint) for each target tried. `pass` holds the `caller`'s API headers,
/// sent to targets of the same API.
pub async fn forward_with<'a>(
    state: &AppState,
    decision: &'a pb::Decision,
    limits: &Limits,
    pending: &mut Pending,
    caller: Format,
    pass: Option<&Passthrough>,
    mut prepare: impl FnMut(&pb::Target) -> Result<Prepared, ApiError>,
) -> Result<Forwarded<'a>, Failed> {
    let targets: Vec<&pb::Target> = decision.target.iter().chain(&decision.fallbacks).collect();
    let mut failed_providers: Vec<&str> = Vec::new();
    let mut attempts = 0;
    let mut last: Option<(AttemptError, Format)> = None;
    let mut all_rate_limited = true;
    let mut all_rejected = true;
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
            pending.begin_attempt(target);
            failed(pending, &e, attempt_started);
            all_rate_limited = false;
            all_rejected = false;
            last = Some((e, upstream_format));
            continue;
        };
        let step = std::time::Instant::now();
        let prepared = prepare(target).map_err(Failed::Request)?;
        state.metrics.step("prepare", step.elapsed());
        attempts += 1;
        let url = prepared
            .url
            .clone()
            .unwrap_or_else(|| upstream::url(target));
        // Stands as cancelled until it ends: the app may go away meanwhile.
        pending.begin_attempt(target);
        match crate::overhead::waiting(upstream::send(
            &state.http,
            limits.connect,
            &url,
            target,
            &secret,
            prepared.body.clone(),
            limits.first_byte,
            pass.and_then(|p| p.for_target(caller, upstream_format)),
        ))
        .await
        {
            Ok(resp) => {
                if let Some(a) = pending.last_attempt() {
                    a.status = u32::from(resp.status().as_u16());
                    a.error_class.clear();
                    a.latency_ms = upstream::ms_since(attempt_started);
                    a.rate_limit_headers = upstream::rate_limit_headers(resp.headers());
                }
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
                failed(pending, &e, attempt_started);
                match &e {
                    AttemptError::Client { .. } => {
                        return Err(Failed::Upstream(e, upstream_format));
                    }
                    AttemptError::RateLimited { retry_after, .. } => {
                        state.cooldowns.rate_limited(&target.key_ref, *retry_after);
                        let secs = retry_after.unwrap_or(1).max(1);
                        soonest_retry = Some(soonest_retry.map_or(secs, |s| s.min(secs)));
                        all_rejected = false;
                    }
                    AttemptError::KeyRejected { status, .. } => {
                        // Never logged with the key itself: its reference only.
                        tracing::warn!(provider = %target.provider, key_ref = %target.key_ref, status = status.as_u16(), "provider rejected the key; parked, trying the next");
                        state.cooldowns.rejected(&target.key_ref);
                        all_rate_limited = false;
                    }
                    _ => {
                        all_rate_limited = false;
                        all_rejected = false;
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
        Some(_) if all_rejected => Err(Failed::KeysRejected),
        Some((e, f)) => Err(Failed::Upstream(e, f)),
    }
}

/// Fills in the attempt under way as failed with `e`.
fn failed(pending: &mut Pending, e: &AttemptError, started: Instant) {
    let Some(a) = pending.last_attempt() else {
        return;
    };
    if let AttemptError::RateLimited { headers, .. } = e {
        a.rate_limit_headers = upstream::rate_limit_headers(headers);
    }
    a.status = e.status();
    e.class().clone_into(&mut a.error_class);
    a.latency_ms = upstream::ms_since(started);
}
