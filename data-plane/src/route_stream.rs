//! `Route` over one long-lived `RouteStream` to the control plane: each call
//! sends its request with an id and waits for the answer with that id, so a
//! turn costs one message each way instead of a new HTTP/2 stream. The stream
//! is opened on first use and again after it ends; a control plane without
//! `RouteStream` (older than this sidecar) is asked with unary `Route`.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use keel::pb::{self, router_client::RouterClient};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Code, Status, metadata::MetadataMap};

use crate::control_plane::ControlPlaneChannel;

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
        }
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
        };
        if open.requests.send(request).is_err() {
            return Err(ended());
        }
        rx.await.unwrap_or_else(|_| Err(ended()))
    }

    async fn unary(&self, req: pb::RouteRequest) -> Answer {
        let mut router = self.router.clone();
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
) {
    loop {
        match answers.message().await {
            Ok(Some(answer)) => {
                let caller = lock(&waiting).calls.remove(&answer.id);
                if let Some(caller) = caller {
                    let _ = caller.send(decode(answer.result));
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
