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
};

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

/// Calls waiting for their answer on one open stream.
#[derive(Default)]
struct Waiting {
    calls: HashMap<u64, oneshot::Sender<Answer>>,
    /// The stream ended: nothing new may wait on it.
    ended: bool,
}

/// One open stream: where requests go and who waits for answers.
struct Open {
    requests: mpsc::UnboundedSender<pb::RouteStreamRequest>,
    waiting: Arc<Mutex<Waiting>>,
}

type Slot = Mutex<Option<Arc<Open>>>;

/// The multiplexed `Route` client.
pub struct RouteStream {
    router: RouterClient<ControlPlaneChannel>,
    rpc: RouteRpc,
    /// The control plane answered `RouteStream` with UNIMPLEMENTED.
    unary_only: AtomicBool,
    next_id: AtomicU64,
    open: Arc<Slot>,
    /// Held while a stream is being opened, so concurrent first calls open one.
    opening: tokio::sync::Mutex<()>,
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
            opening: tokio::sync::Mutex::new(()),
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
    /// (the caller's deadline) stops waiting, and a late answer is dropped.
    pub async fn route(&self, req: pb::RouteRequest) -> Answer {
        if self.rpc == RouteRpc::Unary || self.unary_only.load(Ordering::Relaxed) {
            return self.unary(req).await;
        }
        let open = match self.current().await {
            Ok(open) => open,
            Err(status) if status.code() == Code::Unimplemented => {
                tracing::info!("control plane has no RouteStream; using unary Route");
                self.unary_only.store(true, Ordering::Relaxed);
                return self.unary(req).await;
            }
            Err(status) => return Err(status),
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut waiting = lock(&open.waiting);
            if waiting.ended {
                return Err(ended());
            }
            waiting.calls.insert(id, tx);
        }
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
        rx.await.unwrap_or_else(|_| Err(ended()))
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

    /// The open stream, opening one if there is none.
    async fn current(&self) -> Result<Arc<Open>, Status> {
        if let Some(open) = lock(&self.open).clone() {
            return Ok(open);
        }
        let _opening = self.opening.lock().await;
        if let Some(open) = lock(&self.open).clone() {
            return Ok(open);
        }
        let (requests, rx) = mpsc::unbounded_channel();
        let mut router = self.router.clone();
        let answers = router
            .route_stream(UnboundedReceiverStream::new(rx))
            .await?
            .into_inner();
        let open = Arc::new(Open {
            requests,
            waiting: Arc::default(),
        });
        tokio::spawn(read_answers(
            answers,
            Arc::clone(&open.waiting),
            Arc::downgrade(&self.open),
            Arc::clone(&self.orphans),
        ));
        *lock(&self.open) = Some(Arc::clone(&open));
        Ok(open)
    }
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
    let caller = lock(waiting).calls.remove(&answer.id);
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
