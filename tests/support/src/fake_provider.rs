//! A fake LLM provider on loopback that speaks three wire formats:
//! `POST /v1/chat/completions` (OpenAI), `POST /v1/messages` (Anthropic, and
//! its `/v1/messages/count_tokens`) and `POST /v1/responses` (OpenAI
//! Responses, written by `scripted`).
//! It replays recorded responses and streams, records what it received, and
//! can be told to fail, stall, hold or cut a stream. The same behaviour can
//! be driven over HTTP (`POST /_fake/behavior`, `POST /_fake/release`,
//! `GET /_fake/requests`) by tests in other languages.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::{
    Method, Request, Response, StatusCode, body::Frame, body::Incoming, service::service_fn,
};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::{net::TcpListener, sync::watch};

use crate::{
    replay, script,
    scripted::{self, Answer, Api, ScriptedCall},
};

type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// What `POST /v1/messages/count_tokens` answers.
pub const FAKE_TOKEN_COUNT: u32 = 4242;

/// How the fake answers. Defaults: succeed at once.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Behavior {
    /// Answer every request with this status and the provider's error body.
    pub fail_status: Option<u16>,
    /// `Retry-After` seconds sent with a failure.
    pub retry_after: Option<u64>,
    /// Delay before the response head, ms.
    pub head_delay_ms: u64,
    /// Delay between streamed frames, ms.
    pub frame_delay_ms: u64,
    /// After this many frames, wait until released (see [`FakeProvider::release`]).
    pub hold_after_frames: Option<usize>,
    /// After this many frames, break the connection.
    pub cut_after_frames: Option<usize>,
    /// Apply `fail_status` only to requests made with this key (the secret,
    /// as sent in `Authorization: Bearer` or `x-api-key`).
    pub fail_only_key: Option<String>,
    /// When the model is to call a tool, call this one (in every format)
    /// instead of replaying the recorded calls.
    pub tool_call: Option<ScriptedCall>,
    /// Answer as the scripted agent of script.rs (a two-step shell task)
    /// instead of replaying the recordings.
    pub script: bool,
}

/// A request the fake received.
#[derive(Debug, Clone, Serialize)]
pub struct Recorded {
    pub path: String,
    pub authorization: Option<String>,
    pub x_api_key: Option<String>,
    pub anthropic_version: Option<String>,
    /// The query string, if any.
    pub query: Option<String>,
    /// Every other header (credentials left out), names in lower case;
    /// repeated ones joined with `,`.
    pub headers: std::collections::BTreeMap<String, String>,
    pub body: Value,
}

struct Shared {
    /// Keep received requests for `requests()` (off for benchmarks, where
    /// the list would grow with every request).
    record: bool,
    behavior: Mutex<Behavior>,
    requests: Mutex<Vec<Recorded>>,
    released: watch::Sender<bool>,
}

/// A running fake provider; stops when dropped.
pub struct FakeProvider {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl FakeProvider {
    /// Starts on `127.0.0.1:0`.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_on("127.0.0.1:0".parse().expect("valid addr")).await
    }

    /// Starts on `addr`.
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<Self> {
        Self::start_with(addr, true).await
    }

    /// Starts on `addr`; with `record` false, received requests are not kept.
    pub async fn start_with(addr: SocketAddr, record: bool) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            record,
            behavior: Mutex::new(Behavior::default()),
            requests: Mutex::new(Vec::new()),
            released: watch::channel(false).0,
        });
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let serving = Arc::clone(&shared);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let _ = stream.set_nodelay(true);
                        let shared = Arc::clone(&serving);
                        tokio::spawn(async move {
                            let svc = service_fn(move |req| handle(Arc::clone(&shared), req));
                            let _ = auto::Builder::new(TokioExecutor::new())
                                .serve_connection(TokioIo::new(stream), svc)
                                .await;
                        });
                    }
                }
            }
        });
        Ok(Self {
            addr,
            shared,
            _stop: stop,
        })
    }

    /// Base URL for an `api = "openai"` provider (ends in `/v1`).
    pub fn openai_base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Base URL for an `api = "anthropic"` provider (the host root).
    pub fn anthropic_base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces the behaviour (and closes any open hold gate).
    pub fn set_behavior(&self, b: Behavior) {
        *self.shared.behavior.lock().expect("lock") = b;
        self.shared.released.send_replace(false);
    }

    /// Lets held streams continue.
    pub fn release(&self) {
        self.shared.released.send_replace(true);
    }

    /// Requests received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().expect("lock").clone()
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (authorization, x_api_key, anthropic_version) = (
        header("authorization"),
        header("x-api-key"),
        header("anthropic-version"),
    );
    let query = req.uri().query().map(str::to_owned);
    let mut headers = std::collections::BTreeMap::<String, String>::new();
    for (name, value) in req.headers() {
        if matches!(name.as_str(), "authorization" | "x-api-key") {
            continue;
        }
        let value = value.to_str().unwrap_or_default();
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push(',');
                v.push_str(value);
            })
            .or_insert_with(|| value.to_owned());
    }
    let bytes = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let record = |body: Value| {
        if shared.record {
            shared.requests.lock().expect("lock").push(Recorded {
                path: path.clone(),
                authorization: authorization.clone(),
                x_api_key: x_api_key.clone(),
                anthropic_version,
                query,
                headers,
                body,
            });
        }
    };
    let resp = match (&method, path.as_str()) {
        (&Method::GET, "/healthz") => json(StatusCode::OK, "{\"ok\":true}".into()),
        (&Method::GET, "/_fake/requests") => {
            let list = shared.requests.lock().expect("lock").clone();
            json(
                StatusCode::OK,
                serde_json::to_string(&list).unwrap_or_default(),
            )
        }
        (&Method::POST, "/_fake/behavior") => match serde_json::from_slice::<Behavior>(&bytes) {
            Ok(b) => {
                *shared.behavior.lock().expect("lock") = b;
                shared.released.send_replace(false);
                json(StatusCode::OK, "{}".into())
            }
            Err(e) => json(StatusCode::BAD_REQUEST, format!("{{\"error\":\"{e}\"}}")),
        },
        (&Method::POST, "/_fake/release") => {
            shared.released.send_replace(true);
            json(StatusCode::OK, "{}".into())
        }
        (&Method::POST, "/v1/messages/count_tokens") => {
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            record(body);
            // A stand-in count the tests can tell from Keel's estimate.
            json(
                StatusCode::OK,
                format!("{{\"input_tokens\":{FAKE_TOKEN_COUNT}}}"),
            )
        }
        (&Method::POST, "/v1/chat/completions" | "/v1/messages" | "/v1/responses") => {
            let api = match path.as_str() {
                "/v1/messages" => Api::Anthropic,
                "/v1/responses" => Api::Responses,
                _ => Api::Chat,
            };
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            record(body.clone());
            let mut behavior = shared.behavior.lock().expect("lock").clone();
            if let Some(only) = &behavior.fail_only_key {
                let used = authorization
                    .as_deref()
                    .and_then(|a| a.strip_prefix("Bearer "))
                    .or(x_api_key.as_deref());
                if used != Some(only.as_str()) {
                    behavior.fail_status = None;
                }
            }
            answer(&shared, api, &body, behavior).await
        }
        _ => json(StatusCode::NOT_FOUND, "{\"error\":\"not found\"}".into()),
    };
    Ok(resp)
}

fn json(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|e| match e {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", "application/json".parse().expect("valid"));
    r
}

/// Whether the model is expected to call a tool now: tools are offered and
/// the last message is not a tool result.
fn wants_tool(anthropic: bool, body: &Value) -> bool {
    let has_tools = body
        .get("tools")
        .and_then(Value::as_array)
        .is_some_and(|t| !t.is_empty());
    let last = body
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.last());
    let answered = last.is_some_and(|m| {
        if anthropic {
            m.get("content")
                .and_then(Value::as_array)
                .is_some_and(|blocks| {
                    blocks
                        .iter()
                        .any(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
                })
        } else {
            m.get("role").and_then(Value::as_str) == Some("tool")
        }
    });
    has_tools && !answered
}

async fn answer(shared: &Shared, api: Api, body: &Value, b: Behavior) -> Response<Body> {
    let anthropic = api == Api::Anthropic;
    if b.head_delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(b.head_delay_ms)).await;
    }
    if let Some(status) = b.fail_status {
        let text = match (anthropic, status) {
            (true, 429) => replay::ANTHROPIC_429.to_owned(),
            (true, _) => replay::ANTHROPIC_OVERLOADED.to_owned(),
            (false, 429) => replay::OPENAI_429.to_owned(),
            (false, _) => r#"{"error":{"message":"The server had an error while processing your request.","type":"server_error","param":null,"code":null}}"#.to_owned(),
        };
        let mut r = json(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            text,
        );
        if let Some(secs) = b.retry_after {
            r.headers_mut().insert("retry-after", secs.into());
        }
        if status == 429 && !anthropic {
            r.headers_mut()
                .insert("x-ratelimit-remaining-requests", 0.into());
        }
        return r;
    }
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if b.script && api != Api::Responses {
        let step = script::next(anthropic, body);
        let n = script::answer_number();
        if !stream {
            return json(StatusCode::OK, script::whole(anthropic, model, &step, n));
        }
        let frames = script::frames(anthropic, model, &step, n, include_usage);
        return sse(shared, frames, b);
    }
    if let Some(answer) = written(api, body, &b, model, stream, include_usage) {
        return match answer {
            Answer::Json(text) => json(StatusCode::OK, text),
            Answer::Frames(frames) => sse(shared, frames, b),
        };
    }
    let tool = wants_tool(anthropic, body);
    if !stream {
        let recording = match (anthropic, tool) {
            (true, true) => replay::ANTHROPIC_MESSAGE_TOOL,
            (true, false) => replay::ANTHROPIC_MESSAGE,
            (false, true) => replay::OPENAI_COMPLETION_TOOL,
            (false, false) => replay::OPENAI_COMPLETION,
        };
        return json(StatusCode::OK, replay::with_model(recording, model));
    }
    let recording = match (anthropic, tool) {
        (true, true) => replay::ANTHROPIC_STREAM_TOOL,
        (true, false) => replay::ANTHROPIC_STREAM,
        (false, true) => replay::OPENAI_STREAM_TOOL,
        (false, false) => replay::OPENAI_STREAM,
    };
    sse(shared, replay::frames(recording, model, include_usage), b)
}

/// An answer written rather than replayed: every Responses answer, and a scripted
/// tool call when one is due.
fn written(
    api: Api,
    body: &Value,
    b: &Behavior,
    model: &str,
    stream: bool,
    include_usage: bool,
) -> Option<Answer> {
    let due = match api {
        Api::Responses => scripted::responses_wants_tool(body),
        _ => wants_tool(api == Api::Anthropic, body),
    };
    let call = b.tool_call.as_ref().filter(|_| due).and_then(|c| {
        let name = c.name.clone().or_else(|| scripted::first_tool(api, body))?;
        Some((name, c.arguments.clone()))
    });
    match (api, &call) {
        (Api::Responses, _) => {
            let call = call.as_ref().map(|(n, a)| (n.as_str(), a.as_str()));
            // Without a script a due call names the first tool with no arguments.
            let fallback = scripted::first_tool(api, body).filter(|_| due);
            let call = call.or(fallback.as_deref().map(|n| (n, "{}")));
            Some(scripted::responses(model, call, stream))
        }
        (Api::Chat, Some((name, args))) => Some(scripted::chat_tool_call(
            model,
            name,
            args,
            stream,
            include_usage,
        )),
        (Api::Anthropic, Some((name, args))) => {
            Some(scripted::anthropic_tool_call(model, name, args, stream))
        }
        _ => None,
    }
}

/// Streams `frames` under the behaviour's delays, holds and cuts.
fn sse(shared: &Shared, frames: Vec<String>, b: Behavior) -> Response<Body> {
    let released = shared.released.subscribe();
    let state = (frames.into_iter().enumerate(), b, released);
    let stream = futures_util::stream::unfold(state, |(mut frames, b, mut released)| async move {
        let (i, frame) = frames.next()?;
        if b.cut_after_frames == Some(i) {
            return Some((
                Err(std::io::Error::other("fake provider cut the stream")),
                (frames, b, released),
            ));
        }
        if b.hold_after_frames == Some(i) {
            let _ = released.wait_for(|r| *r).await;
        }
        if i > 0 && b.frame_delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(b.frame_delay_ms)).await;
        }
        Some((Ok(Frame::data(Bytes::from(frame))), (frames, b, released)))
    });
    let mut r = Response::new(StreamBody::new(stream).boxed_unsync());
    r.headers_mut()
        .insert("content-type", "text/event-stream".parse().expect("valid"));
    r
}
