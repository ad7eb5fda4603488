//! Dispatch of the sidecar's HTTP routes.

use std::{convert::Infallible, sync::Arc, time::Instant};

use http::{HeaderValue, Method, Request, Response, header};
use hyper::body::Incoming;
use serde_json::json;
use tracing::Instrument;

use crate::{
    body::{Body, full},
    chat, count_tokens,
    error::ApiError,
    format::Format,
    overhead, responses,
    state::AppState,
};

/// Serves one HTTP request. Never fails: every error becomes a response in
/// the caller's API error shape.
pub async fn handle(
    state: Arc<AppState>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let chat = req.method() == Method::POST;
    let span = request_span(&req);
    let (mut response, own) = overhead::scope(started, dispatch(Arc::clone(&state), req))
        .instrument(span.clone())
        .await;
    span.record("http.response.status_code", response.status().as_u16());
    overhead::stamp(response.headers_mut(), own);
    if chat {
        state.metrics.overhead(own);
    }
    Ok(response)
}

/// The request's server span, when traces are exported: the parent of
/// the control plane's `Route` span and of each upstream call's span.
fn request_span(req: &Request<Incoming>) -> tracing::Span {
    if !keel::telemetry::enabled() {
        return tracing::Span::none();
    }
    let path = req.uri().path();
    let route = match path {
        "/v1/chat/completions" | "/v1/messages" | "/v1/models" | "/healthz" | "/metrics" => path,
        _ => "other",
    };
    tracing::info_span!(
        "keel.request",
        otel.name = %format_args!("{} {route}", req.method()),
        otel.kind = "server",
        http.request.method = %req.method(),
        http.route = route,
        http.response.status_code = tracing::field::Empty,
    )
}

async fn dispatch(state: Arc<AppState>, req: Request<Incoming>) -> Response<Body> {
    let anthropic_caller = req.headers().contains_key("anthropic-version");
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => text("ok\n"),
        // Harnesses probe the base URL before their first request.
        (&Method::HEAD | &Method::GET, "/") => text("keel-sidecar\n"),
        (&Method::GET, "/metrics") => {
            let mut r = Response::new(full(state.metrics.render()));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
            );
            r
        }
        (&Method::POST, "/v1/chat/completions") => chat_request(state, req, Format::OpenAi).await,
        (&Method::POST, "/v1/messages") => chat_request(state, req, Format::Anthropic).await,
        // The Responses API answers (and errs) in the OpenAI shape.
        (&Method::POST, "/v1/responses") => chat_request(state, req, Format::OpenAi).await,
        (&Method::POST, "/v1/messages/count_tokens") => {
            let response = count_tokens::handle(Arc::clone(&state), req)
                .await
                .unwrap_or_else(|e| e.into_response(Format::Anthropic));
            state
                .metrics
                .request(Format::Anthropic, response.status().as_u16());
            response
        }
        (&Method::GET, "/v1/models") => {
            let format = if anthropic_caller {
                Format::Anthropic
            } else {
                Format::OpenAi
            };
            models(&state, &req, format)
                .await
                .unwrap_or_else(|e| e.into_response(format))
        }
        (method, path) => {
            let format = if anthropic_caller || path.starts_with("/v1/messages") {
                Format::Anthropic
            } else {
                Format::OpenAi
            };
            ApiError::NotFound(format!("no route for {method} {path}")).into_response(format)
        }
    }
}

/// A chat request, answered in `format`'s shape and counted.
async fn chat_request(
    state: Arc<AppState>,
    req: Request<Incoming>,
    format: Format,
) -> Response<Body> {
    // Shed at the door rather than queue: an overloaded sidecar answers at
    // once and the app's retry logic takes it from there.
    let Ok(slot) = Arc::clone(&state.in_flight).try_acquire_owned() else {
        let response = ApiError::Wait {
            message: format!(
                "the sidecar is at its limit of {} requests in flight",
                state.config.max_concurrency
            ),
            retry_after_secs: Some(1),
        }
        .into_response(format);
        state.metrics.request(format, response.status().as_u16());
        return response;
    };
    let served = if req.uri().path() == "/v1/responses" {
        responses::handle(Arc::clone(&state), req, slot).await
    } else {
        chat::handle(Arc::clone(&state), req, format, slot).await
    };
    let response = served.unwrap_or_else(|e| e.into_response(format));
    state.metrics.request(format, response.status().as_u16());
    response
}

fn text(body: &'static str) -> Response<Body> {
    let mut r = Response::new(full(body));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// `GET /v1/models`: the catalog's client-facing names, in the caller's shape.
async fn models(
    state: &AppState,
    req: &Request<Incoming>,
    format: Format,
) -> Result<Response<Body>, ApiError> {
    state.authorize(req.headers())?;
    if state.route.catalog().models.is_empty() {
        // First call before the refresher got a snapshot: try once now.
        let _ = state.route.refresh_catalog().await;
    }
    let catalog = state.route.catalog();
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for t in catalog.models.iter().filter_map(|m| m.target.as_ref()) {
        if !seen.iter().any(|(name, _)| *name == t.model) {
            seen.push((&t.model, &t.provider));
        }
    }
    // Exact aliases resolve too (patterns such as `claude-*` name no model
    // one could list); an alias is owned by its model's provider.
    for a in catalog.aliases.iter().filter(|a| !a.name.contains('*')) {
        let owner = seen
            .iter()
            .find(|(name, _)| *name == a.model)
            .map_or("keel", |(_, provider)| *provider);
        if !seen.iter().any(|(name, _)| *name == a.name) {
            seen.push((&a.name, owner));
        }
    }
    let body = match format {
        Format::OpenAi => json!({
            "object": "list",
            "data": seen.iter().map(|(id, provider)| json!({
                "id": id, "object": "model", "created": 0, "owned_by": provider,
            })).collect::<Vec<_>>(),
        }),
        Format::Anthropic => json!({
            "data": seen.iter().map(|(id, _)| json!({
                "type": "model", "id": id, "display_name": id, "created_at": "1970-01-01T00:00:00Z",
            })).collect::<Vec<_>>(),
            "has_more": false,
            "first_id": seen.first().map(|(id, _)| *id),
            "last_id": seen.last().map(|(id, _)| *id),
        }),
    };
    let mut r = Response::new(full(serde_json::to_vec(&body).unwrap_or_default()));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}
