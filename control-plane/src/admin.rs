//! `keel.v1.Admin`: the catalog snapshot sidecars keep, and a conversation's
//! session and decision timeline.

use std::sync::Arc;

use keel::pb::{self, admin_server};
use tonic::{Request, Response, Status};

use crate::{
    router::RouterState,
    store::{SessionKey, now_ms},
};

/// The tonic service wrapper.
pub struct AdminService(pub Arc<RouterState>);

#[tonic::async_trait]
impl admin_server::Admin for AdminService {
    async fn get_catalog(
        &self,
        _request: Request<pb::GetCatalogRequest>,
    ) -> Result<Response<pb::Catalog>, Status> {
        let config = &self.0.config;
        let mut profiles: Vec<String> = config.profiles.keys().cloned().collect();
        profiles.sort_unstable();
        Ok(Response::new(pb::Catalog {
            models: config.catalog.to_proto(),
            default_profile: config.routing.default_profile.clone(),
            profiles,
        }))
    }

    async fn get_conversation(
        &self,
        request: Request<pb::GetConversationRequest>,
    ) -> Result<Response<pb::Conversation>, Status> {
        let req = request.into_inner();
        let tenant = if req.tenant.is_empty() {
            keel::DEFAULT_TENANT.to_owned()
        } else {
            req.tenant
        };
        let key = SessionKey::new(&tenant, &req.conversation_id);
        let store = &self.0.store;
        let internal = |e| {
            tracing::error!(error = %e, "session store failed");
            Status::internal("session store unavailable")
        };
        let session = store
            .get(&key, now_ms())
            .map_err(internal)?
            .ok_or_else(|| Status::not_found("no such conversation"))?;
        let decisions = store
            .decisions(&key)
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
        }))
    }
}
