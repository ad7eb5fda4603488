//! Asks the control plane for a decision, with a short deadline, and fails
//! static when it cannot: a conversation keeps the pin the control plane
//! granted earlier, a new one goes to `--default-model`.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use keel::pb;

use crate::{
    control_plane::ControlPlaneChannel,
    error::ApiError,
    replicas::Replicas,
    route_stream::{RouteRpc, Wait},
};

/// Most conversations whose last decision is kept for failing static.
const PIN_CACHE_CAPACITY: usize = 100_000;

/// A conversation id as the pin cache keys it: its 128-bit xxh3, so an entry
/// costs 16 bytes and no allocation instead of a copy of the id (a collision
/// among 100k cached ids has odds of about 2^-94).
type PinKey = u128;

fn pin_key(conversation_id: &str) -> PinKey {
    xxhash_rust::xxh3::xxh3_128(conversation_id.as_bytes())
}

/// A decision and whether it was made without the control plane.
pub struct Routed {
    pub decision: pb::Decision,
    pub degraded: bool,
}

/// A granted pin, kept to serve the conversation while the control plane is
/// unreachable.
#[derive(Clone)]
struct CachedPin {
    /// Granted by the control plane (false: chosen here while it was away).
    pinned: bool,
    route: Arc<PinRoute>,
    turn: u32,
}

/// Where a cached pin goes. Shared by every conversation pinned to the same
/// targets (nearly all of them), so a cache entry costs its key and a pointer
/// instead of a copy of several targets.
#[derive(PartialEq)]
struct PinRoute {
    target: pb::Target,
    fallbacks: Vec<pb::Target>,
    profile: String,
}

/// Most distinct [`PinRoute`]s kept for sharing.
const PIN_ROUTES_SHARED: usize = 64;

/// The control plane's catalog as last fetched.
#[derive(Default)]
pub struct CatalogSnapshot {
    pub models: Vec<pb::CatalogModel>,
    /// Aliases and alias patterns (`claude-*`).
    pub aliases: Vec<pb::ModelAlias>,
}

/// Route client with fail-static state.
pub struct RouteClient {
    replicas: Replicas,
    wait: Wait,
    default_model: Option<String>,
    pins: Mutex<HashMap<PinKey, CachedPin>>,
    pin_routes: Mutex<Vec<Arc<PinRoute>>>,
    catalog: RwLock<Arc<CatalogSnapshot>>,
}

impl RouteClient {
    /// Connects lazily: the sidecar starts and serves (degraded) even when
    /// the control plane is not up yet. `channels`: one control plane or
    /// several (replicas on one shared store), by URL.
    pub fn new(
        channels: Vec<(String, ControlPlaneChannel)>,
        wait: Wait,
        default_model: Option<String>,
        rpc: RouteRpc,
    ) -> Self {
        Self {
            replicas: Replicas::new(channels, rpc),
            wait,
            default_model,
            pins: Mutex::new(HashMap::new()),
            pin_routes: Mutex::new(Vec::new()),
            catalog: RwLock::new(Arc::new(CatalogSnapshot::default())),
        }
    }

    /// Reports decisions that come back after their caller stopped waiting
    /// (see [`RouteStream::report_orphans_to`]).
    pub fn report_orphans_to(&self, reporter: crate::report::WeakReporter) {
        self.replicas.report_orphans_to(reporter);
    }

    /// The latest catalog snapshot.
    pub fn catalog(&self) -> Arc<CatalogSnapshot> {
        Arc::clone(&self.catalog.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Fetches the catalog; keeps the old snapshot on failure.
    pub async fn refresh_catalog(&self) -> Result<(), tonic::Status> {
        let fetched = self
            .replicas
            .call(Duration::from_secs(2), |r| {
                let mut admin = r.admin.clone();
                async move { admin.get_catalog(pb::GetCatalogRequest {}).await }
            })
            .await?
            .into_inner();
        *self.catalog.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(CatalogSnapshot {
            models: fetched.models,
            aliases: fetched.aliases,
        });
        Ok(())
    }

    /// Decides a request: from the control plane, else from the fail-static
    /// state.
    pub async fn route(&self, mut req: pb::RouteRequest) -> Result<Routed, ApiError> {
        let conversation = (!req.conversation_id.is_empty()).then(|| pin_key(&req.conversation_id));
        // A side call never takes or moves the pin, here either.
        let side = !req.side_call.is_empty();
        if let Some(id) = &conversation {
            // Served while the control plane was away: tell it which model,
            // so it adopts that one instead of switching silently.
            // Granted earlier: tell it too, so a pin the store lost is
            // taken up again, announced, instead of a silent switch.
            let pins = self.pins.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(pin) = pins.get(id) {
                let model = &pin.route.target.model;
                match pin.pinned {
                    false => req.degraded_model.clone_from(model),
                    true => req.known_pin.clone_from(model),
                }
            }
        }
        let status = match self.replicas.route(self.wait, req).await {
            Ok(decision) => {
                if let Some(id) = conversation
                    && decision.kind != pb::DecisionKind::Side as i32
                {
                    self.remember(id, &decision);
                }
                return Ok(Routed {
                    decision,
                    degraded: false,
                });
            }
            Err(status) => status,
        };
        match crate::refusal::to_api_error(&status) {
            Some(refused) => Err(refused),
            None => {
                tracing::warn!(code = ?status.code(), message = status.message(), "control plane unreachable, failing static");
                self.fail_static(conversation, side)
            }
        }
    }

    /// The shared [`PinRoute`] equal to these targets (compared, not cloned,
    /// on the hot path).
    fn pin_route(
        &self,
        target: &pb::Target,
        fallbacks: &[pb::Target],
        profile: &str,
    ) -> Arc<PinRoute> {
        let mut shared = self.pin_routes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = shared
            .iter()
            .find(|r| r.target == *target && r.fallbacks == fallbacks && r.profile == profile)
        {
            return Arc::clone(r);
        }
        if shared.len() >= PIN_ROUTES_SHARED {
            // The catalog changed a lot: start over (cached pins keep theirs).
            shared.clear();
        }
        let r = Arc::new(PinRoute {
            target: target.clone(),
            fallbacks: fallbacks.to_vec(),
            profile: profile.to_owned(),
        });
        shared.push(Arc::clone(&r));
        r
    }

    fn remember(&self, conversation_id: PinKey, d: &pb::Decision) {
        let route = match &d.target {
            Some(target) if d.pinned => self.pin_route(target, &d.fallbacks, &d.profile),
            _ => {
                // Not locked: nothing to keep, and a degraded choice is settled.
                let mut pins = self.pins.lock().unwrap_or_else(|p| p.into_inner());
                pins.remove(&conversation_id);
                return;
            }
        };
        let mut pins = self.pins.lock().unwrap_or_else(|p| p.into_inner());
        if pins.len() >= PIN_CACHE_CAPACITY && !pins.contains_key(&conversation_id) {
            // Bounded: drop an arbitrary entry; the control plane still holds
            // the pin, this cache only matters while it is unreachable.
            if let Some(k) = pins.keys().next().copied() {
                pins.remove(&k);
            }
        }
        pins.insert(
            conversation_id,
            CachedPin {
                pinned: true,
                route,
                turn: d.turn,
            },
        );
    }

    /// A decision without the control plane. A side call (`side`) is served
    /// by the cached pin or the default model as turn 0, and leaves the
    /// cache alone.
    fn fail_static(&self, conversation: Option<PinKey>, side: bool) -> Result<Routed, ApiError> {
        if let Some(id) = conversation {
            let mut pins = self.pins.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(pin) = pins.get_mut(&id) {
                if side {
                    return Ok(Routed {
                        decision: pb::Decision {
                            target: Some(pin.route.target.clone()),
                            fallbacks: pin.route.fallbacks.clone(),
                            kind: pb::DecisionKind::Side as i32,
                            reason: "control plane unreachable: side call on the cached pin".into(),
                            profile: pin.route.profile.clone(),
                            ..Default::default()
                        },
                        degraded: true,
                    });
                }
                pin.turn += 1;
                return Ok(Routed {
                    decision: pb::Decision {
                        target: Some(pin.route.target.clone()),
                        fallbacks: pin.route.fallbacks.clone(),
                        pinned: pin.pinned,
                        kind: pb::DecisionKind::Retain as i32,
                        reason: "control plane unreachable: cached pin".into(),
                        turn: pin.turn,
                        profile: pin.route.profile.clone(),
                        ..Default::default()
                    },
                    degraded: true,
                });
            }
        }
        let Some(name) = &self.default_model else {
            return Err(ApiError::Unavailable(
                "control plane unreachable and no --default-model configured".into(),
            ));
        };
        let catalog = self.catalog();
        let mut deployments = catalog
            .models
            .iter()
            .filter_map(|m| m.target.as_ref())
            .filter(|t| &t.model == name);
        let Some(target) = deployments.next().cloned() else {
            return Err(ApiError::Unavailable(format!(
                "control plane unreachable and default model `{name}` is not in the catalog snapshot"
            )));
        };
        let fallbacks: Vec<pb::Target> = deployments.cloned().collect();
        let mut turn = 0;
        if let Some(id) = conversation.filter(|_| !side) {
            // Later turns while degraded stay on this model too.
            turn = 1;
            let route = self.pin_route(&target, &fallbacks, "");
            let mut pins = self.pins.lock().unwrap_or_else(|p| p.into_inner());
            pins.insert(
                id,
                CachedPin {
                    pinned: false,
                    route,
                    turn,
                },
            );
        }
        Ok(Routed {
            decision: pb::Decision {
                target: Some(target),
                fallbacks,
                pinned: false,
                kind: if side {
                    pb::DecisionKind::Side
                } else {
                    pb::DecisionKind::Unpinned
                } as i32,
                reason: "control plane unreachable: default model".into(),
                turn,
                ..Default::default()
            },
            degraded: true,
        })
    }

    /// Sends a batch of outcomes.
    pub async fn report(&self, batch: pb::ReportBatch) -> Result<u32, tonic::Status> {
        let ack = self
            .replicas
            .call(Duration::from_secs(5), |r| {
                let mut router = r.router.clone();
                let batch = batch.clone();
                async move { router.report(batch).await }
            })
            .await?;
        Ok(ack.into_inner().accepted)
    }
}
