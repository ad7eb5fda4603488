//! `keel.v1.Router`: `Route` decides (decide.rs), `Report` feeds signals
//! and spend (report.rs); divergence nudges and stops are in nudge.rs;
//! `RouteStream` multiplexes `Route` over one stream (stream.rs).

mod adopt;
mod budget;
mod decide;
mod failover;
mod nudge;
mod report;
mod seen;
mod shared;
mod side;
mod stream;
mod traced;

use std::sync::{
    Arc,
    atomic::{AtomicU64, AtomicUsize},
};

pub use shared::run_sync;

use keel::pb::{self, RouteRequest, router_server};
use tonic::{Request, Response, Status};

use crate::{
    auth::{self, Need},
    budget::{Budgets, TenantSpend},
    capacity::Capacity,
    config::{Config, Profile},
    decisions::{DecisionLog, DecisionWriter},
    metrics::Metrics,
    policy::Policy,
    refusal::Refusal,
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
    /// Decision ids whose outcomes were applied (a resent batch is skipped).
    seen: seen::Seen,
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
            seen: Default::default(),
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

    fn profile(&self, name: &str) -> Result<&Profile, Refusal> {
        let name = if name.is_empty() {
            self.config.routing.default_profile.as_str()
        } else {
            name
        };
        self.config.profiles.get(name).ok_or_else(|| {
            let mut known: Vec<&str> = self.config.profiles.keys().map(String::as_str).collect();
            known.sort_unstable();
            Refusal::Invalid(format!(
                "unknown profile `{name}` (known: {})",
                known.join(", ")
            ))
        })
    }

    /// Decides one request. Creates and flushes a pin before returning when
    /// the profile locks sessions. Runs divergence detection on the request's
    /// fingerprints: a nudge is added to `inject` and recorded with the decision.
    pub async fn route(&self, req: RouteRequest) -> Result<pb::Decision, Status> {
        let started = std::time::Instant::now();
        match self.decide(req).await {
            Ok(decision) => {
                self.metrics.decision(
                    &decision.profile,
                    decision.kind(),
                    decision.pinned,
                    started.elapsed(),
                );
                Ok(decision)
            }
            Err(refusal) => {
                self.metrics.refusal(&refusal);
                Err(refusal.into())
            }
        }
    }
}

/// The names of a request, by the one rule of [`keel::names`].
fn validate_ids(req: &RouteRequest) -> Result<(), Refusal> {
    auth::check_names(&[
        ("tenant", &req.tenant),
        ("conversation id", &req.conversation_id),
        ("profile", &req.profile),
        ("model", &req.model),
        ("degraded model", &req.degraded_model),
    ])
    .map_err(|status| Refusal::Invalid(status.message().to_owned()))
}

/// A store failure answered to a `Report` caller.
fn internal(e: StoreError) -> Status {
    Refusal::Store(e).into()
}

/// The tonic service wrapper.
pub struct RouterService(pub Arc<RouterState>);

#[tonic::async_trait]
impl router_server::Router for RouterService {
    async fn route(
        &self,
        request: Request<RouteRequest>,
    ) -> Result<Response<pb::Decision>, Status> {
        let principal = auth::principal(&request, Need::Route)?;
        let parent = traced::carrier(request.metadata());
        let mut req = request.into_inner();
        auth::scope_route(&principal, &mut req)?;
        self.0.route_traced(req, &parent).await.map(Response::new)
    }

    async fn report(
        &self,
        request: Request<pb::ReportBatch>,
    ) -> Result<Response<pb::ReportAck>, Status> {
        let principal = auth::principal(&request, Need::Route)?;
        let mut batch = request.into_inner();
        auth::scope_report(&principal, &mut batch)?;
        let accepted = self.0.report(batch).await?;
        Ok(Response::new(pb::ReportAck { accepted }))
    }

    type RouteStreamStream = stream::Answers;

    async fn route_stream(
        &self,
        request: Request<tonic::Streaming<pb::RouteStreamRequest>>,
    ) -> Result<Response<Self::RouteStreamStream>, Status> {
        let principal = auth::principal(&request, Need::Route)?;
        let heartbeats = request.metadata().contains_key(keel::metadata::HEARTBEATS);
        Ok(Response::new(stream::serve(
            Arc::clone(&self.0),
            principal,
            heartbeats,
            request.into_inner(),
        )))
    }
}
