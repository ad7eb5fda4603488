//! `RouteStream`: `Route` multiplexed over one long-lived gRPC stream. Each
//! request of a stream is decided on its own task (a turn that creates a pin
//! waits for the store's flush without holding up the others, and the
//! runtime's workers share the stream's decisions), and answered with its
//! id; a refusal travels as a `RouteError` carrying the status `Route` would
//! have returned. The task that reads the stream only hands requests out and
//! answers back, so it also sends heartbeats on time while decisions take
//! long (see [`HEARTBEAT`]).

use std::sync::Arc;

use futures_util::{StreamExt, stream::FuturesUnordered};
use keel::pb;
use tokio::{sync::mpsc, time::Instant};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use super::RouterState;
use crate::auth::{self, Principal};
use crate::refusal::Refusal;

/// Answers buffered towards one caller before deciding waits for it to read.
const ANSWERS_BUFFERED: usize = 1024;

/// While requests are being decided and none was answered for this long, a
/// heartbeat (id 0, no result) tells the caller the control plane is there:
/// its `Route` deadline then means "nothing heard", not "slow disk".
pub const HEARTBEAT: std::time::Duration = std::time::Duration::from_millis(10);

/// The response stream of `RouteStream`.
pub type Answers = ReceiverStream<Result<pb::RouteStreamResponse, Status>>;

/// Serves one `RouteStream` call: reads requests until the caller ends the
/// stream or the server begins to stop, answers every request it read, and
/// then ends the answers; with `heartbeats` (the caller asked), sends them.
pub fn serve(
    state: Arc<RouterState>,
    principal: Principal,
    heartbeats: bool,
    mut requests: Streaming<pb::RouteStreamRequest>,
) -> Answers {
    let (tx, rx) = mpsc::channel(ANSWERS_BUFFERED);
    let mut stopping = state.stopping.subscribe();
    tokio::spawn(async move {
        let mut deciding = FuturesUnordered::new();
        let mut reading = true;
        let mut heard = Instant::now();
        while reading || !deciding.is_empty() {
            tokio::select! {
                Some(answer) = deciding.next(), if !deciding.is_empty() => {
                    if tx.send(Ok(answer)).await.is_err() {
                        return; // the caller has gone
                    }
                    heard = Instant::now();
                }
                () = tokio::time::sleep_until(heard + HEARTBEAT), if heartbeats && !deciding.is_empty() => {
                    // Only when the caller has room: a caller that does not
                    // read needs no reassurance.
                    let _ = tx.try_send(Ok(pb::RouteStreamResponse::default()));
                    heard = Instant::now();
                }
                next = requests.message(), if reading => match next {
                    Ok(Some(next)) => {
                        if deciding.is_empty() {
                            heard = Instant::now();
                        }
                        deciding.push(Deciding::spawn(&state, &principal, next));
                    }
                    Ok(None) => reading = false,
                    Err(status) => {
                        tracing::debug!(%status, "route stream ended by the caller");
                        reading = false;
                    }
                },
                // (The guard `wait_for` returns is not `Send`: drop it here.)
                _ = async { drop(stopping.wait_for(|s| *s).await) }, if reading => {
                    reading = false;
                }
            }
        }
    });
    ReceiverStream::new(rx)
}

/// One request being decided on its own task, aborted if the stream's task
/// drops it (the caller has gone).
struct Deciding {
    id: u64,
    task: tokio::task::JoinHandle<pb::RouteStreamResponse>,
}

impl Deciding {
    fn spawn(
        state: &Arc<RouterState>,
        principal: &Principal,
        next: pb::RouteStreamRequest,
    ) -> Self {
        let (state, principal) = (Arc::clone(state), principal.clone());
        Self {
            id: next.id,
            task: tokio::spawn(async move { decide(&state, &principal, next).await }),
        }
    }
}

impl std::future::Future for Deciding {
    type Output = pb::RouteStreamResponse;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let id = self.id;
        std::pin::Pin::new(&mut self.task).poll(cx).map(|joined| {
            joined.unwrap_or_else(|_| pb::RouteStreamResponse {
                id,
                result: Some(pb::route_stream_response::Result::Error(route_error(
                    &Status::internal("deciding this request failed"),
                ))),
            })
        })
    }
}

impl Drop for Deciding {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Decides one request of the stream.
async fn decide(
    state: &RouterState,
    principal: &Principal,
    next: pb::RouteStreamRequest,
) -> pb::RouteStreamResponse {
    let result = match next.request {
        Some(mut req) => match auth::scope_route(principal, &mut req) {
            Ok(()) => state.route_traced(req, &next.trace_context).await,
            Err(status) => Err(status),
        },
        None => Err(Refusal::Invalid("route stream request without `request`".into()).into()),
    };
    let result = Some(match result {
        Ok(decision) => pb::route_stream_response::Result::Decision(decision),
        Err(status) => pb::route_stream_response::Result::Error(route_error(&status)),
    });
    pb::RouteStreamResponse {
        id: next.id,
        result,
    }
}

/// The status as a message: code, text and its ASCII metadata.
fn route_error(status: &Status) -> pb::RouteError {
    let metadata = status
        .metadata()
        .iter()
        .filter_map(|kv| match kv {
            tonic::metadata::KeyAndValueRef::Ascii(k, v) => {
                Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned()))
            }
            tonic::metadata::KeyAndValueRef::Binary(..) => None,
        })
        .collect();
    pb::RouteError {
        code: status.code() as i32,
        message: status.message().to_owned(),
        metadata,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_keeps_its_code_message_and_metadata() {
        let mut status = Status::resource_exhausted("shed under load");
        status
            .metadata_mut()
            .insert("retry-after", "3".parse().unwrap());
        let e = route_error(&status);
        assert_eq!(e.code, tonic::Code::ResourceExhausted as i32);
        assert_eq!(e.message, "shed under load");
        assert_eq!(e.metadata.get("retry-after").map(String::as_str), Some("3"));
    }
}
