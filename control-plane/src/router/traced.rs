//! `Route` in the caller's trace: when traces are exported, each decision
//! runs in a server span whose parent is the sidecar's request span (W3C
//! `traceparent` from gRPC metadata, or from the stream request's
//! `trace_context`), with what was decided as attributes.

use std::collections::HashMap;

use keel::{pb, semconv::attr};
use tonic::Status;
use tracing::{Instrument, field::Empty};

use super::RouterState;

/// The W3C trace headers of a unary call's metadata (empty when traces are
/// off).
pub(super) fn carrier(metadata: &tonic::metadata::MetadataMap) -> HashMap<String, String> {
    if !keel::telemetry::enabled() {
        return HashMap::new();
    }
    ["traceparent", "tracestate"]
        .into_iter()
        .filter_map(|k| Some((k.to_owned(), metadata.get(k)?.to_str().ok()?.to_owned())))
        .collect()
}

impl RouterState {
    /// [`RouterState::route`] in a span that continues `parent`'s trace.
    pub async fn route_traced(
        &self,
        req: pb::RouteRequest,
        parent: &HashMap<String, String>,
    ) -> Result<pb::Decision, Status> {
        if !keel::telemetry::enabled() {
            return self.route(req).await;
        }
        let span = tracing::info_span!(
            "keel.v1.Router/Route",
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = "keel.v1.Router",
            rpc.method = "Route",
            gen_ai.conversation.id = %req.conversation_id,
            keel.profile = Empty,
            keel.decision.kind = Empty,
            gen_ai.request.model = Empty,
            gen_ai.provider.name = Empty,
            keel.provider = Empty,
            keel.turn = Empty,
            error.type = Empty,
        );
        keel::telemetry::set_parent(&span, parent);
        let result = self.route(req).instrument(span.clone()).await;
        match &result {
            Ok(d) => {
                span.record("keel.profile", d.profile.as_str());
                span.record("keel.decision.kind", d.kind().as_str_name());
                span.record("keel.turn", d.turn);
                if let Some(t) = &d.target {
                    span.record(attr::REQUEST_MODEL, t.model.as_str());
                    span.record(attr::PROVIDER_NAME, t.gen_ai_provider_name.as_str());
                    span.record("keel.provider", t.provider.as_str());
                }
            }
            Err(status) => {
                span.record(attr::ERROR_TYPE, format!("{:?}", status.code()));
            }
        }
        result
    }
}
