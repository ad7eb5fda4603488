//! `keel.v1.Admin`: the catalog snapshot sidecars keep, a conversation's
//! session and decision timeline, and run-time budget caps (budgets.rs).

mod budgets;

use std::sync::Arc;

use keel::pb::{self, admin_server};
use tonic::{Request, Response, Status};

use crate::{
    auth::{self, Need},
    router::RouterState,
    store::{SessionKey, now_ms},
};

/// The tonic service wrapper.
pub struct AdminService(pub Arc<RouterState>);

#[tonic::async_trait]
impl admin_server::Admin for AdminService {
    async fn get_catalog(
        &self,
        request: Request<pb::GetCatalogRequest>,
    ) -> Result<Response<pb::Catalog>, Status> {
        auth::principal(&request, Need::Catalog)?;
        let config = &self.0.config;
        let mut profiles: Vec<String> = config.profiles.keys().cloned().collect();
        profiles.sort_unstable();
        Ok(Response::new(pb::Catalog {
            models: config.catalog.to_proto(),
            default_profile: config.routing.default_profile.clone(),
            profiles,
            aliases: config.catalog.aliases_proto(),
        }))
    }

    async fn get_conversation(
        &self,
        request: Request<pb::GetConversationRequest>,
    ) -> Result<Response<pb::Conversation>, Status> {
        auth::principal(&request, Need::Read)?;
        let req = request.into_inner();
        auth::check_names(&[
            ("tenant", &req.tenant),
            ("conversation id", &req.conversation_id),
        ])?;
        let tenant = keel::tenant_or_default(&req.tenant).to_owned();
        let key = SessionKey::new(&tenant, &req.conversation_id);
        let store = &self.0.store;
        let internal = |e| Status::from(crate::refusal::Refusal::Store(e));
        let session = store
            .get(&key, now_ms())
            .map_err(internal)?
            .ok_or_else(|| Status::not_found("no such conversation"))?;
        let decisions = self
            .0
            .timeline(&key)
            .await
            .map_err(internal)?
            .into_iter()
            .map(|d| pb::DecisionRecord {
                decision_id: d.decision_id,
                turn: d.turn,
                kind: d.kind,
                model: d.model,
                provider: d.provider,
                reason: d.reason,
                at_unix_ms: d.at_ms,
                events: d.events.iter().map(|e| e.to_proto()).collect(),
                result: d.result.map(|r| pb::TurnResult {
                    success: r.success,
                    latency_ms: r.latency_ms,
                    ttft_ms: r.ttft_ms,
                    usage: Some(pb::Usage {
                        input_tokens: r.input_tokens,
                        output_tokens: r.output_tokens,
                        cached_input_tokens: r.cached_input_tokens,
                        cache_creation_tokens: r.cache_creation_tokens,
                        estimated: r.usage_estimated,
                    }),
                    cost_usd: r.cost_usd,
                    provider: r.provider,
                    key_ref: r.key_ref,
                    attempts: r.attempts,
                    cancelled: r.cancelled,
                }),
            })
            .collect();
        Ok(Response::new(pb::Conversation {
            tenant,
            conversation_id: req.conversation_id,
            pinned_model: session.pinned_model.unwrap_or_default(),
            profile: session.profile,
            turns: session.turns,
            created_unix_ms: session.created_ms,
            last_seen_unix_ms: session.last_seen_ms,
            spend_usd: session.spend_usd,
            decisions,
            input_tokens: session.input_tokens,
            output_tokens: session.output_tokens,
            cached_input_tokens: session.cached_input_tokens,
            cache_hit_ratio: if session.input_tokens > 0 {
                session.cached_input_tokens as f64 / session.input_tokens as f64
            } else {
                0.0
            },
            key_affinity: session.key_affinity.unwrap_or_default(),
        }))
    }

    async fn set_budgets(
        &self,
        request: Request<pb::SetBudgetsRequest>,
    ) -> Result<Response<pb::Budgets>, Status> {
        auth::principal(&request, Need::Write)?;
        let req = request.into_inner();
        budget_names(&req.tenant, &req.conversation_id, &req.profile)?;
        budgets::set(&self.0, req).await.map(Response::new)
    }

    async fn get_budgets(
        &self,
        request: Request<pb::GetBudgetsRequest>,
    ) -> Result<Response<pb::Budgets>, Status> {
        auth::principal(&request, Need::Read)?;
        let req = request.into_inner();
        budget_names(&req.tenant, &req.conversation_id, &req.profile)?;
        budgets::get(&self.0, req).map(Response::new)
    }
}

/// The names of a budgets request (set or get).
fn budget_names(tenant: &str, conversation_id: &str, profile: &str) -> Result<(), Status> {
    auth::check_names(&[
        ("tenant", tenant),
        ("conversation id", conversation_id),
        ("profile", profile),
    ])
}
