//! `Route` over one long-lived `RouteStream` to the control plane: each call
//! sends its request with an id and waits for the answer with that id, so a
//! turn costs one message each way instead of a new HTTP/2 stream. The stream
//! is opened on first use and again after it ends; a control plane without
//! `RouteStream` (older than this sidecar) is asked with unary `Route`.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, OnceLock, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::future::{BoxFuture, FutureExt, Shared};
use keel::pb::{self, router_client::RouterClient};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Code, Status, metadata::MetadataMap};

use crate::control_plane::ControlPlaneChannel;

use crate::report::WeakReporter;

/// How `Route` is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RouteRpc {
    /// One `RouteStream` for every request (falls back to unary `Route` when
    /// the control plane does not offer it).
    Stream,
    /// One unary `Route` call per request.
    Unary,
}

type Answer = Result<pb::Decision, Status>;

/// How long a `Route` call waits (see [`RouteStream::route`]).
#[derive(Debug, Clone, Copy)]
pub struct Wait {
    /// Longest silence of the control plane before it counts as gone.
    pub silence: Duration,
    /// Longest wait for an answer while it is there.
    pub longest: Duration,
}

/// Calls waiting for their answer on one open stream.
#[derive(Default)]
struct Waiting {
    calls: HashMap<u64, oneshot::Sender<Answer>>,
    /// The stream ended: nothing new may wait on it.
    ended: bool,
    /// Answers and heartbeats read from the stream so far: one that came
    /// after a call was sent shows the control plane was there meanwhile.
    heard: u64,
}

/// One open stream: where requests go and who waits for answers.
struct Open {
    requests: mpsc::UnboundedSender<pb::RouteStreamRequest>,
    waiting: Arc<Mutex<Waiting>>,
}

type Slot = Mutex<Option<Arc<Open>>>;

/// An opening of the stream, on its own task: a caller whose deadline
/// passes stops waiting for it, the opening itself goes on (were it
/// cancelled with its caller, a control plane slower to open than one
/// deadline would never get a stream under load).
type Opening = Shared<BoxFuture<'static, Result<Arc<Open>, Status>>>;

/// The multiplexed `Route` client.
pub struct RouteStream {
    router: RouterClient<ControlPlaneChannel>,
    rpc: RouteRpc,
    /// The control plane answered `RouteStream` with UNIMPLEMENTED.
    unary_only: AtomicBool,
    next_id: AtomicU64,
    open: Arc<Slot>,
    /// The stream being opened, shared by every call waiting for it.
    opening: Arc<Mutex<Option<Opening>>>,
    /// Where decisions nobody waits for any more are reported as cancelled.
    orphans: Arc<OnceLock<WeakReporter>>,
}

impl RouteStream {
    pub fn new(router: RouterClient<ControlPlaneChannel>, rpc: RouteRpc) -> Self {
        Self {
            router,
            rpc,
            unary_only: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            open: Arc::new(Mutex::new(None)),
            opening: Arc::default(),
            orphans: Arc::default(),
        }
    }

    /// Reports decisions that arrive after their caller stopped waiting
    /// (the app hung up, or the route deadline passed and the sidecar failed
    /// static) as cancelled, so the control plane releases their keys.
    pub fn report_orphans_to(&self, reporter: WeakReporter) {
        let _ = self.orphans.set(reporter);
    }

    /// Asks for one decision. Cancel-safe: a call dropped before its answer
    /// stops waiting, and a late answer is dropped.
    ///
    /// `wait.silence` bounds how long the control plane may stay silent:
    /// when nothing at all (no answer, no heartbeat) came back on the stream
    /// for that long, it is gone or hung and the call fails with
    /// DEADLINE_EXCEEDED (the caller fails static). While it keeps showing
    /// life, the call waits for its answer up to `wait.longest`, then fails
    /// with RESOURCE_EXHAUSTED and a `retry-after`: this request was stuck
    /// in a queue, the gateway is overloaded and sheds it.
    pub async fn route(&self, req: pb::RouteRequest, wait: Wait) -> Answer {
        let started = tokio::time::Instant::now();
        if self.rpc == RouteRpc::Unary || self.unary_only.load(Ordering::Relaxed) {
            return within(wait.silence, self.unary(req)).await;
        }
        let opened = tokio::time::timeout(wait.silence, self.current()).await;
        let open = match opened.unwrap_or_else(|_| Err(deadline_passed())) {
            Ok(open) => open,
            Err(status) if status.code() == Code::Unimplemented => {
                tracing::info!("control plane has no RouteStream; using unary Route");
                self.unary_only.store(true, Ordering::Relaxed);
                return within(
                    wait.silence.saturating_sub(started.elapsed()),
                    self.unary(req),
                )
                .await;
            }
            Err(status) => return Err(status),
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = oneshot::channel();
        let mut heard = {
            let mut waiting = lock(&open.waiting);
            if waiting.ended {
                return Err(ended());
            }
            waiting.calls.insert(id, tx);
            waiting.heard
        };
        let _forget = Forget {
            waiting: &open.waiting,
            id,
        };
        let request = pb::RouteStreamRequest {
            id,
            request: Some(req),
            trace_context: keel::telemetry::current_context(),
        };
        if open.requests.send(request).is_err() {
            return Err(ended());
        }
        let longest = started + wait.longest.max(wait.silence);
        // Silence counts from the request's sending (opening the stream had
        // its own bound above).
        let mut window_end = tokio::time::Instant::now() + wait.silence;
        loop {
            if let Ok(answer) = tokio::time::timeout_at(window_end.min(longest), &mut rx).await {
                return answer.unwrap_or_else(|_| Err(ended()));
            }
            let (now_heard, in_flight) = {
                let w = lock(&open.waiting);
                (w.heard, w.calls.len())
            };
            if now_heard == heard {
                return Err(Status::deadline_exceeded(format!(
                    "route deadline passed: nothing from the control plane for {} ms ({in_flight} calls waiting)",
                    wait.silence.as_millis()
                )));
            }
            if window_end >= longest {
                tracing::debug!(in_flight, "route answer queued past the longest wait");
                return Err(overloaded());
            }
            heard = now_heard;
            window_end += wait.silence;
        }
    }

    async fn unary(&self, req: pb::RouteRequest) -> Answer {
        let mut router = self.router.clone();
        let mut req = tonic::Request::new(req);
        for (k, v) in keel::telemetry::current_context() {
            if let (Ok(k), Ok(v)) = (
                tonic::metadata::MetadataKey::from_bytes(k.as_bytes()),
                v.parse(),
            ) {
                req.metadata_mut().insert(k, v);
            }
        }
        router.route(req).await.map(tonic::Response::into_inner)
    }

    /// The open stream, opening one if there is none (or waiting for the
    /// opening under way).
    async fn current(&self) -> Result<Arc<Open>, Status> {
        if let Some(open) = lock(&self.open).clone() {
            return Ok(open);
        }
        let opening = {
            let mut opening = lock(&self.opening);
            if let Some(open) = lock(&self.open).clone() {
                return Ok(open);
            }
            opening
                .get_or_insert_with(|| {
                    let task = crate::link::spawn(open_stream(
                        self.router.clone(),
                        Arc::clone(&self.open),
                        Arc::clone(&self.opening),
                        Arc::clone(&self.orphans),
                    ));
                    task.map(|joined| {
                        joined
                            .unwrap_or_else(|_| Err(Status::internal("route stream opener failed")))
                    })
                    .boxed()
                    .shared()
                })
                .clone()
        };
        opening.await
    }
}

/// Opens a stream, starts reading its answers and puts it in `slot`.
async fn open_stream(
    mut router: RouterClient<ControlPlaneChannel>,
    slot: Arc<Slot>,
    opening: Arc<Mutex<Option<Opening>>>,
    orphans: Arc<OnceLock<WeakReporter>>,
) -> Result<Arc<Open>, Status> {
    let (requests, rx) = mpsc::unbounded_channel();
    let mut request = tonic::Request::new(UnboundedReceiverStream::new(rx));
    request.metadata_mut().insert(
        keel::metadata::HEARTBEATS,
        tonic::metadata::MetadataValue::from_static("1"),
    );
    let opened = router
        .route_stream(request)
        .await
        .map(tonic::Response::into_inner);
    // Under `opening`'s lock: a caller sees the stream in the slot or the
    // opening under way, never neither.
    let mut opening = lock(&opening);
    *opening = None;
    let open = Arc::new(Open {
        requests,
        waiting: Arc::default(),
    });
    crate::link::spawn(read_answers(
        opened?,
        Arc::clone(&open.waiting),
        Arc::downgrade(&slot),
        orphans,
    ));
    *lock(&slot) = Some(Arc::clone(&open));
    Ok(open)
}

/// Hands each answer to its caller; when the stream ends, fails every call
/// still waiting and clears the slot so the next call opens a new stream.
async fn read_answers(
    mut answers: tonic::Streaming<pb::RouteStreamResponse>,
    waiting: Arc<Mutex<Waiting>>,
    slot: Weak<Slot>,
    orphans: Arc<OnceLock<WeakReporter>>,
) {
    loop {
        match answers.message().await {
            Ok(Some(answer)) => {
                if let Some(decision) = hand_over(&waiting, answer)
                    && let Some(reporter) = orphans.get()
                {
                    reporter.send(orphan_outcome(decision));
                }
            }
            Ok(None) => break,
            Err(status) => {
                tracing::warn!(%status, "route stream to the control plane ended");
                break;
            }
        }
    }
    let callers = {
        let mut w = lock(&waiting);
        w.ended = true;
        std::mem::take(&mut w.calls)
    };
    if let Some(slot) = slot.upgrade() {
        let mut slot = lock(&slot);
        if slot
            .as_ref()
            .is_some_and(|open| Arc::ptr_eq(&open.waiting, &waiting))
        {
            *slot = None;
        }
    }
    for (_, caller) in callers {
        let _ = caller.send(Err(ended()));
    }
}

/// Hands the answer to its caller; returns a decision nobody took (the
/// caller stopped waiting): the control plane counts its key in flight.
fn hand_over(waiting: &Mutex<Waiting>, answer: pb::RouteStreamResponse) -> Option<pb::Decision> {
    let caller = {
        let mut w = lock(waiting);
        w.heard += 1;
        // A heartbeat: nobody to hand it to.
        answer.result.as_ref()?;
        w.calls.remove(&answer.id)
    };
    let unclaimed = match caller {
        Some(caller) => caller.send(decode(answer.result)).err()?,
        None => decode(answer.result),
    };
    unclaimed.ok()
}

/// The outcome of a decision nobody used: cancelled on its primary target,
/// nothing spent.
fn orphan_outcome(decision: pb::Decision) -> pb::Outcome {
    pb::Outcome {
        decision_id: decision.decision_id,
        profile: decision.profile,
        turn: decision.turn,
        attempts: vec![pb::Attempt {
            target: decision.target,
            error_class: crate::outcome::CANCELLED.to_owned(),
            ..Default::default()
        }],
        cancelled: true,
        usage: Some(pb::Usage::default()),
        ..Default::default()
    }
}

/// An answer as `Route` would have returned it.
fn decode(result: Option<pb::route_stream_response::Result>) -> Answer {
    match result {
        Some(pb::route_stream_response::Result::Decision(d)) => Ok(d),
        Some(pb::route_stream_response::Result::Error(e)) => {
            let mut metadata = MetadataMap::new();
            for (k, v) in &e.metadata {
                if let (Ok(k), Ok(v)) = (
                    k.parse::<tonic::metadata::MetadataKey<tonic::metadata::Ascii>>(),
                    v.parse(),
                ) {
                    metadata.insert(k, v);
                }
            }
            Err(Status::with_metadata(
                Code::from_i32(e.code),
                e.message,
                metadata,
            ))
        }
        None => Err(Status::internal("route stream answer without a result")),
    }
}

fn ended() -> Status {
    Status::unavailable("route stream to the control plane ended")
}

/// The deadline passed with no sign of the control plane.
pub fn deadline_passed() -> Status {
    Status::deadline_exceeded("route deadline passed")
}

/// The deadline passed while the control plane kept answering others: the
/// request waited in a queue (this gateway or the control plane is
/// overloaded). Answered 429 with `Retry-After`, never routed degraded.
fn overloaded() -> Status {
    let mut status = Status::resource_exhausted(
        "gateway overloaded: the routing decision was queued past its deadline; retry shortly",
    );
    status.metadata_mut().insert(
        keel::metadata::RETRY_AFTER,
        tonic::metadata::MetadataValue::from_static("1"),
    );
    status
}

/// `f` within `deadline`, DEADLINE_EXCEEDED past it.
async fn within(deadline: Duration, f: impl Future<Output = Answer>) -> Answer {
    tokio::time::timeout(deadline, f)
        .await
        .unwrap_or_else(|_| Err(deadline_passed()))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Stops waiting for an answer (answered, failed or cancelled).
struct Forget<'a> {
    waiting: &'a Mutex<Waiting>,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        lock(self.waiting).calls.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(id: u64) -> pb::RouteStreamResponse {
        pb::RouteStreamResponse {
            id,
            result: Some(pb::route_stream_response::Result::Decision(pb::Decision {
                decision_id: format!("d{id}"),
                target: Some(pb::Target {
                    key_ref: "k".into(),
                    ..Default::default()
                }),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn a_decision_nobody_waits_for_is_reported_cancelled() {
        let waiting = Mutex::new(Waiting::default());
        // Its caller went away (forgotten) or dropped its receiver.
        assert_eq!(hand_over(&waiting, answer(1)).unwrap().decision_id, "d1");
        let (tx, rx) = oneshot::channel();
        lock(&waiting).calls.insert(2, tx);
        drop(rx);
        let orphan = hand_over(&waiting, answer(2)).expect("unclaimed");
        let o = orphan_outcome(orphan);
        assert!(o.cancelled && !o.success);
        assert_eq!(o.decision_id, "d2");
        assert_eq!(o.attempts[0].error_class, crate::outcome::CANCELLED);
        assert_eq!(o.attempts[0].target.as_ref().unwrap().key_ref, "k");
        // A caller still waiting gets it.
        let (tx, mut rx) = oneshot::channel();
        lock(&waiting).calls.insert(3, tx);
        assert!(hand_over(&waiting, answer(3)).is_none());
        assert!(rx.try_recv().unwrap().is_ok());
    }

    #[test]
    fn a_refusal_comes_back_as_the_status_route_would_return() {
        let e = pb::RouteError {
            code: Code::ResourceExhausted as i32,
            message: "budget exceeded".into(),
            metadata: [("keel-budget".to_owned(), "conversation_usd".to_owned())].into(),
        };
        let status = decode(Some(pb::route_stream_response::Result::Error(e))).unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(status.message(), "budget exceeded");
        assert_eq!(
            status
                .metadata()
                .get("keel-budget")
                .and_then(|v| v.to_str().ok()),
            Some("conversation_usd")
        );
        assert_eq!(decode(None).unwrap_err().code(), Code::Internal);
    }
}

#[cfg(test)]
#[path = "route_stream_wait_tests.rs"]
mod wait_tests;
