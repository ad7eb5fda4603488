//! `RouteStream`: `Route` multiplexed over one long-lived gRPC stream. The
//! requests of one stream are decided concurrently on the task that reads
//! them (a turn that creates a pin waits for the store's flush without
//! holding up the others), with no task spawned per request, and answered
//! with their id; a refusal travels as a `RouteError` carrying the status
//! `Route` would have returned.

use std::sync::Arc;

use futures_util::{StreamExt, stream::FuturesUnordered};
use keel::pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use super::RouterState;
use crate::auth::{self, Principal};
use crate::refusal::Refusal;

/// Answers buffered towards one caller before deciding waits for it to read.
const ANSWERS_BUFFERED: usize = 1024;

/// The response stream of `RouteStream`.
pub type Answers = ReceiverStream<Result<pb::RouteStreamResponse, Status>>;

/// Serves one `RouteStream` call: reads requests until the caller ends the
/// stream or the server begins to stop, answers every request it read, and
/// then ends the answers.
pub fn serve(
    state: Arc<RouterState>,
    principal: Principal,
    mut requests: Streaming<pb::RouteStreamRequest>,
) -> Answers {
    let (tx, rx) = mpsc::channel(ANSWERS_BUFFERED);
    let mut stopping = state.stopping.subscribe();
    tokio::spawn(async move {
        let (state, principal) = (&*state, &principal);
        let mut deciding = FuturesUnordered::new();
        let mut reading = true;
        while reading || !deciding.is_empty() {
            tokio::select! {
                Some(answer) = deciding.next(), if !deciding.is_empty() => {
                    if tx.send(Ok(answer)).await.is_err() {
                        return; // the caller has gone
                    }
                }
                next = requests.message(), if reading => match next {
                    Ok(Some(next)) => deciding.push(decide(state, principal, next)),
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
