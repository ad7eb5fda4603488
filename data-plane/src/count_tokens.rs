//! `POST /v1/messages/count_tokens` (Anthropic). Routed as a side call
//! (`count_tokens`: never a turn, never the pin); forwarded to the target
//! when it speaks Anthropic (with the app's `anthropic-*` headers), else
//! answered with Keel's own estimate (about 4 characters a token, images at
//! a flat rate: the `estimated_prompt_tokens` routing uses), marked
//! `X-Keel-Estimate: true`. Not reported: it costs nothing.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use keel::pb;
use serde_json::{Map, Value, json};

use crate::{
    body::{Body, full},
    chat,
    error::ApiError,
    facts::BodyFacts,
    features,
    format::Format,
    forward::Failed,
    headers::decorate,
    identity, inbound,
    passthrough::Passthrough,
    side::COUNT_TOKENS,
    state::AppState,
    upstream::{self, AttemptError},
};

/// Counts the tokens of an Anthropic Messages request.
pub async fn handle(
    state: Arc<AppState>,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let inbound::Accepted {
        parts,
        keel: keel_headers,
        bytes,
    } = inbound::accept(&state, req).await?;
    let mut body: Map<String, Value> = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("request body is not a JSON object: {e}")))?;
    if !body.get("messages").is_some_and(Value::is_array) {
        return Err(ApiError::BadRequest("`messages` must be an array".into()));
    }
    let model = match body.get("model") {
        None | Some(Value::Null) => "auto".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(ApiError::BadRequest("`model` must be a string".into())),
    };
    let facts = BodyFacts::of_tree(&body);
    let features = features::from_facts(&facts, &body, false);
    let estimate = features.estimated_prompt_tokens;
    let identity = identity::identify(keel_headers.conversation_id, &parts.headers, &body, &facts);
    let routed = state
        .route
        .route(pb::RouteRequest {
            tenant: state.config.tenant.clone(),
            conversation_id: identity.conversation_id,
            session_source: identity.source as i32,
            profile: keel_headers.profile.unwrap_or_default(),
            model,
            features: Some(features),
            side_call: COUNT_TOKENS.to_owned(),
            ..Default::default()
        })
        .await?;
    let decision = routed.decision;
    let target = decision
        .target
        .as_ref()
        .ok_or_else(|| ApiError::Unavailable("the decision named no target".into()))?;
    let mut response = match Format::of_target(target.wire_format) {
        Format::Anthropic => {
            body.insert("model".into(), target.upstream_model.clone().into());
            let pass = Passthrough::from_parts(Format::Anthropic, &parts);
            forward(&state, target, &body, &pass, &decision).await?
        }
        Format::OpenAi => {
            let mut r = json_response(StatusCode::OK, json!({ "input_tokens": estimate }));
            r.headers_mut()
                .insert("x-keel-estimate", HeaderValue::from_static("true"));
            r
        }
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

/// Sends the count to an Anthropic target and relays its answer.
async fn forward(
    state: &AppState,
    target: &pb::Target,
    body: &Map<String, Value>,
    pass: &Passthrough,
    decision: &pb::Decision,
) -> Result<Response<Body>, ApiError> {
    let Some(secret) = state.keys.get(&target.key_ref) else {
        let env_var = keel::keys::env_var_for(&target.key_ref);
        let e = AttemptError::MissingKey { env_var };
        return Err(chat::to_api_error(
            Failed::Upstream(e, Format::Anthropic),
            Format::Anthropic,
        ));
    };
    let limits = state.limits(decision.limits.as_ref());
    let encoded = serde_json::to_vec(body)
        .map_err(|e| ApiError::BadRequest(format!("cannot encode the request: {e}")))?;
    let url = format!("{}/v1/messages/count_tokens", target.base_url);
    let sent = upstream::send(
        &state.http,
        limits.connect,
        &url,
        target,
        &secret,
        Bytes::from(encoded),
        limits.first_byte,
        Some(pass),
    )
    .await;
    let resp = sent.map_err(|e| {
        chat::to_api_error(Failed::Upstream(e, Format::Anthropic), Format::Anthropic)
    })?;
    let status = resp.status();
    let bytes = tokio::time::timeout(limits.idle, resp.bytes())
        .await
        .map_err(|_| ApiError::GatewayTimeout("the provider did not answer in time".into()))?
        .map_err(|e| ApiError::BadGateway(format!("provider answer broke off: {e}")))?;
    let mut r = Response::new(full(bytes));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

fn json_response(status: StatusCode, v: Value) -> Response<Body> {
    let mut r = Response::new(full(serde_json::to_vec(&v).unwrap_or_default()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}
