//! `keel.v1.Router`: `Route` decides (decide.rs), `Report` feeds signals
//! and spend (report.rs); divergence nudges and stops are in nudge.rs;
//! `RouteStream` multiplexes `Route` over one stream (stream.rs).

mod adopt;
mod budget;
mod decide;
mod failover;
mod nudge;
mod report;
mod shared;
mod stream;

use std::sync::{
    Arc,
    atomic::{AtomicU64, AtomicUsize},
};

pub use shared::run_sync;

use keel::pb::{self, DecisionKind, RouteRequest, router_server};
use tonic::{Request, Response, Status};

use crate::{
    budget::{Budgets, TenantSpend},
    capacity::Capacity,
    config::{Config, Profile},
    decisions::{DecisionLog, DecisionWriter},
    metrics::Metrics,
    policy::{Choice, Policy, PolicyError},
    signals::Signals,
    store::{SessionKey, SessionStore, StoreError},
};

/// Most fallbacks carried by a decision.
const MAX_FALLBACKS: usize = 4;

/// State shared by the gRPC services.
pub struct RouterState {
    pub config: Config,
    pub store: Arc<dyn SessionStore>,
    pub signals: Signals,
    pub metrics: Arc<Metrics>,
    /// Per-key load: in flight, rate-limit headroom, 429s.
    pub capacity: Capacity,
    /// Budget caps (config and run time) and tenant spend per day.
    pub budgets: Budgets,
    pub tenants: TenantSpend,
    /// Decision records, written by the server's [`DecisionWriter`].
    pub decision_log: DecisionLog,
    spread: AtomicUsize,
    explore: AtomicU64,
    /// Set when the server begins to stop: open `RouteStream`s end, so that
    /// the graceful shutdown is not held up by callers that never hang up.
    stopping: tokio::sync::watch::Sender<bool>,
}

impl RouterState {
    /// The state and the writer of its decision records, which the owner
    /// must run (and stop after the last `Route`).
    pub fn new(config: Config, store: Arc<dyn SessionStore>) -> (Self, DecisionWriter) {
        let metrics = Arc::new(Metrics::new(config.profiles.keys().map(String::as_str)));
        let overrides = store.budget_overrides().unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot read run-time budget caps; using the config's");
            None
        });
        let (decision_log, writer) = DecisionLog::new(Arc::clone(&store));
        let state = Self {
            decision_log,
            signals: Signals::new(&config.catalog, config.health),
            capacity: Capacity::new(&config.catalog, config.load.clone()),
            budgets: Budgets::new(config.budgets, overrides.unwrap_or_default()),
            tenants: TenantSpend::default(),
            config,
            store,
            metrics,
            spread: AtomicUsize::new(0),
            explore: AtomicU64::new(0),
            stopping: tokio::sync::watch::Sender::new(false),
        };
        (state, writer)
    }

    /// Ends every open `RouteStream` once its in-flight requests are
    /// answered; new requests on them are not read.
    pub fn stop_streams(&self) {
        self.stopping.send_replace(true);
    }

    /// The conversation's decision records, oldest first, including every
    /// record queued so far.
    pub async fn timeline(
        &self,
        key: &SessionKey,
    ) -> Result<Vec<crate::store::DecisionEntry>, StoreError> {
        self.decision_log.sync().await;
        self.store.decisions(key)
    }

    fn policy(&self) -> Policy<'_> {
        Policy {
            catalog: &self.config.catalog,
            signals: &self.signals,
            default_latency_ms: self.config.routing.default_latency.as_secs_f64() * 1000.0,
            spread: &self.spread,
            capacity: &self.capacity,
            explore: &self.explore,
            explore_every: self.config.routing.explore_every,
        }
    }

    fn profile(&self, name: &str) -> Result<&Profile, Status> {
        let name = if name.is_empty() {
            self.config.routing.default_profile.as_str()
        } else {
            name
        };
        self.config.profiles.get(name).ok_or_else(|| {
            let mut known: Vec<&str> = self.config.profiles.keys().map(String::as_str).collect();
            known.sort_unstable();
            Status::invalid_argument(format!(
                "unknown profile `{name}` (known: {})",
                known.join(", ")
            ))
        })
    }

    /// Decides one request. Creates and flushes a pin before returning when
    /// the profile locks sessions. Runs divergence detection on the request's
    /// fingerprints: a nudge is added to `inject` and recorded with the decision.
    pub async fn route(&self, req: RouteRequest) -> Result<pb::Decision, Status> {
        match self.decide(req).await {
            Ok(decision) => {
                self.metrics.decision(&decision.profile, decision.kind());
                Ok(decision)
            }
            Err(status) => {
                self.metrics.refusal(&status);
                Err(status)
            }
        }
    }
    #[allow(clippy::too_many_arguments)]
    pub(super) fn decision(
        &self,
        decision_id: String,
        profile: &Profile,
        choice: &Choice,
        fallbacks: Vec<(usize, usize)>,
        pinned: bool,
        kind: DecisionKind,
        turn: u32,
    ) -> pb::Decision {
        let catalog = &self.config.catalog;
        let r = &self.config.routing;
        // In half-open state, this decision is the breaker's probe.
        self.signals.chosen(choice.deployment);
        // In flight until its report arrives (or the in-flight timeout).
        self.capacity.started(
            catalog.deployments()[choice.deployment].provider,
            choice.key,
            std::time::Instant::now(),
        );
        pb::Decision {
            decision_id,
            target: Some(catalog.target(choice.deployment, choice.key)),
            fallbacks: fallbacks
                .into_iter()
                .map(|(d, k)| catalog.target(d, k))
                .collect(),
            pinned,
            kind: kind as i32,
            reason: choice.reason.clone(),
            turn,
            inject: Vec::new(),
            profile: profile.name.clone(),
            limits: Some(pb::Limits {
                connect_timeout_ms: r.connect_timeout.as_millis() as u32,
                first_byte_timeout_ms: r.first_byte_timeout.as_millis() as u32,
                idle_timeout_ms: r.idle_timeout.as_millis() as u32,
                max_attempts: r.max_attempts,
            }),
        }
    }
}

fn validate_ids(req: &RouteRequest) -> Result<(), Status> {
    if req.conversation_id.len() > keel::MAX_CONVERSATION_ID_BYTES {
        return Err(Status::invalid_argument(format!(
            "conversation id is {} bytes; at most {} allowed",
            req.conversation_id.len(),
            keel::MAX_CONVERSATION_ID_BYTES
        )));
    }
    if req.conversation_id.contains('\0') || req.tenant.contains('\0') {
        return Err(Status::invalid_argument(
            "conversation id and tenant must not contain NUL",
        ));
    }
    Ok(())
}

fn no_candidate(e: PolicyError) -> Status {
    match e {
        PolicyError::NoCandidate { .. } => Status::failed_precondition(e.to_string()),
        PolicyError::Shed {
            retry_after_secs, ..
        } => shed_status(e.to_string(), retry_after_secs),
    }
}

/// RESOURCE_EXHAUSTED without `keel-budget`: wait `retry_after_secs`.
fn shed_status(message: String, retry_after_secs: u64) -> Status {
    let mut status = Status::resource_exhausted(message);
    if let Ok(v) = retry_after_secs.to_string().parse() {
        status
            .metadata_mut()
            .insert(failover::RETRY_AFTER_METADATA, v);
    }
    status
}

fn internal(e: StoreError) -> Status {
    tracing::error!(error = %e, "session store failed");
    Status::internal("session store unavailable")
}

/// The tonic service wrapper.
pub struct RouterService(pub Arc<RouterState>);

#[tonic::async_trait]
impl router_server::Router for RouterService {
    async fn route(
        &self,
        request: Request<RouteRequest>,
    ) -> Result<Response<pb::Decision>, Status> {
        self.0.route(request.into_inner()).await.map(Response::new)
    }

    async fn report(
        &self,
        request: Request<pb::ReportBatch>,
    ) -> Result<Response<pb::ReportAck>, Status> {
        let accepted = self.0.report(request.into_inner()).await?;
        Ok(Response::new(pb::ReportAck { accepted }))
    }

    type RouteStreamStream = stream::Answers;

    async fn route_stream(
        &self,
        request: Request<tonic::Streaming<pb::RouteStreamRequest>>,
    ) -> Result<Response<Self::RouteStreamStream>, Status> {
        Ok(Response::new(stream::serve(
            Arc::clone(&self.0),
            request.into_inner(),
        )))
    }
}
