//! OpenTelemetry traces over OTLP/HTTP: a small receiver stands in for a
//! collector; one chat request through the sidecar yields the sidecar's
//! request span, the control plane's `Route` span and a `chat {model}` span
//! with the GenAI attributes (the finish reasons of a streamed and of a
//! whole answer among them), all in one trace.

mod common;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{AnyValue, any_value::Value as V},
    trace::v1::Span,
};
use prost::Message;

/// Spans received, with the `service.name` of the process that sent them.
type Received = Arc<Mutex<Vec<(String, Span)>>>;

/// An OTLP/HTTP (protobuf) receiver on port 0: `POST /v1/traces`.
async fn receiver() -> (SocketAddr, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received: Received = Arc::default();
    let spans = Arc::clone(&received);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let spans = Arc::clone(&spans);
            let service = service_fn(move |req: Request<Incoming>| {
                let spans = Arc::clone(&spans);
                async move {
                    assert_eq!(req.uri().path(), "/v1/traces");
                    let body = req.into_body().collect().await?.to_bytes();
                    let export = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                    for rs in export.resource_spans {
                        let service = rs
                            .resource
                            .iter()
                            .flat_map(|r| &r.attributes)
                            .find(|kv| kv.key == "service.name")
                            .and_then(|kv| text(kv.value.as_ref()))
                            .unwrap_or_default();
                        for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                            spans.lock().unwrap().push((service.clone(), span));
                        }
                    }
                    Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::new())))
                }
            });
            tokio::spawn(
                hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .into_owned(),
            );
        }
    });
    (addr, received)
}

fn text(v: Option<&AnyValue>) -> Option<String> {
    match v?.value.as_ref()? {
        V::StringValue(s) => Some(s.clone()),
        V::IntValue(i) => Some(i.to_string()),
        V::BoolValue(b) => Some(b.to_string()),
        V::DoubleValue(d) => Some(d.to_string()),
        _ => None,
    }
}

/// A string-array attribute (`gen_ai.response.finish_reasons`).
fn strings(span: &Span, key: &str) -> Option<Vec<String>> {
    let kv = span.attributes.iter().find(|kv| kv.key == key)?;
    match kv.value.as_ref()?.value.as_ref()? {
        V::ArrayValue(a) => a.values.iter().map(|v| text(Some(v))).collect(),
        _ => None,
    }
}

fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| text(kv.value.as_ref()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_is_one_trace_across_sidecar_control_plane_and_provider_call() {
    // Trace context rides in the stream request (the default)...
    traced_request("stream", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_route_carries_the_trace_in_grpc_metadata() {
    // ...and in gRPC metadata on unary `Route` (here for a whole answer).
    traced_request("unary", false).await;
}

/// One chat request, `streamed` or whole, with `--route-rpc route_rpc`.
async fn traced_request(route_rpc: &str, streamed: bool) {
    let (otlp, received) = receiver().await;
    let fake = keel_testkit::FakeProvider::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        &tmp.path().join("data"),
        &format!(
            "[telemetry]\notlp_endpoint = \"http://{otlp}\"\n{}{}",
            alpha(&fake),
            model("strong", 3, 3.0, 15.0)
        ),
    );
    let mut cp = keel_testkit::ControlPlane::start(tmp.path(), &cfg)
        .await
        .unwrap();
    let endpoint = format!("http://{otlp}/");
    let mut args = SIDECAR_ARGS.to_vec();
    args.extend(["--otlp-endpoint", &endpoint, "--route-rpc", route_rpc]);
    let mut sc = keel_testkit::Sidecar::start(tmp.path(), &cp.url(), &args, KEYS)
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let r = post_chat(
        &client,
        &sc.url(),
        Some("traced-1"),
        Some("AGENT"),
        &chat_body("auto", streamed),
    )
    .await;
    assert_eq!(r.status(), 200);
    r.text().await.unwrap();
    // A graceful stop exports what is buffered: no waiting on the batch.
    sc.terminate().unwrap();
    cp.terminate().unwrap();

    let spans = received.lock().unwrap().clone();
    let find = |name: &str| {
        spans
            .iter()
            .find(|(_, s)| s.name == name)
            .unwrap_or_else(|| {
                panic!(
                    "no span {name} in {:?}",
                    spans.iter().map(|(_, s)| &s.name).collect::<Vec<_>>()
                )
            })
    };
    let (sc_service, request) = find("POST /v1/chat/completions");
    let (cp_service, route) = find("keel.v1.Router/Route");
    let (_, call) = find("chat strong");
    assert_eq!(sc_service, "keel-sidecar");
    assert_eq!(cp_service, "keel-control-plane");

    // One trace: Route and the provider call are children of the request.
    assert_eq!(route.trace_id, request.trace_id);
    assert_eq!(call.trace_id, request.trace_id);
    assert_eq!(route.parent_span_id, request.span_id);
    assert_eq!(call.parent_span_id, request.span_id);
    assert_eq!(
        attr(request, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(
        attr(route, "keel.decision.kind").as_deref(),
        Some("DECISION_KIND_INITIALIZE")
    );
    // The Route span names the provider both ways too.
    assert_eq!(
        attr(route, "gen_ai.provider.name").as_deref(),
        Some("openai")
    );
    assert_eq!(attr(route, "keel.provider").as_deref(), Some("alpha"));

    for (key, want) in [
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.provider.name", "openai"),
        ("keel.provider", "alpha"),
        ("gen_ai.request.model", "strong"),
        ("gen_ai.response.model", "strong-up"),
        ("gen_ai.conversation.id", "traced-1"),
        ("keel.profile", "AGENT"),
    ] {
        assert_eq!(attr(call, key).as_deref(), Some(want), "{key}");
    }
    for key in [
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "gen_ai.usage.cache_read.input_tokens",
    ] {
        let n: i64 = attr(call, key)
            .unwrap_or_else(|| panic!("{key}"))
            .parse()
            .unwrap();
        assert!(n >= 0, "{key}");
    }
    assert!(attr(call, "gen_ai.usage.input_tokens").unwrap() != "0");
    // The provider's own reason for ending the answer, streamed or whole.
    assert_eq!(
        strings(call, "gen_ai.response.finish_reasons"),
        Some(vec!["stop".to_owned()]),
        "streamed: {streamed}"
    );
    assert!(attr(call, "error.type").is_none());
    assert!(call.end_time_unix_nano >= call.start_time_unix_nano);
}
