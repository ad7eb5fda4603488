//! `RouteStream::route` against a real control-plane stub over gRPC on a
//! socket: a slow answer with heartbeats is waited for, a silent control
//! plane is given up on, a busy request worker does not make a healthy one
//! look gone.
use std::{pin::Pin, time::Duration};

use keel::pb::router_server::{Router, RouterServer};
use tokio_stream::{Stream, StreamExt, wrappers::TcpListenerStream};
use tonic::{Request, Response, Streaming};

use super::*;

/// Answers each request after `delay`, with heartbeats every 10 ms
/// meanwhile when `heartbeats`.
struct Slow {
    delay: Duration,
    heartbeats: bool,
}

type Out = Pin<Box<dyn Stream<Item = Result<pb::RouteStreamResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Router for Slow {
    async fn route(&self, _: Request<pb::RouteRequest>) -> Result<Response<pb::Decision>, Status> {
        Err(Status::unimplemented("stream only"))
    }

    async fn report(&self, _: Request<pb::ReportBatch>) -> Result<Response<pb::ReportAck>, Status> {
        Err(Status::unimplemented("stream only"))
    }

    type RouteStreamStream = Out;

    async fn route_stream(
        &self,
        request: Request<Streaming<pb::RouteStreamRequest>>,
    ) -> Result<Response<Out>, Status> {
        let mut requests = request.into_inner();
        let (delay, heartbeats) = (self.delay, self.heartbeats);
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            while let Some(Ok(next)) = requests.next().await {
                let answer_at = tokio::time::Instant::now() + delay;
                while heartbeats
                    && tokio::time::Instant::now() + Duration::from_millis(10) < answer_at
                {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    let _ = tx.send(Ok(pb::RouteStreamResponse::default())).await;
                }
                tokio::time::sleep_until(answer_at).await;
                let _ = tx.send(Ok(answer(next.id))).await;
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

fn answer(id: u64) -> pb::RouteStreamResponse {
    pb::RouteStreamResponse {
        id,
        result: Some(pb::route_stream_response::Result::Decision(pb::Decision {
            decision_id: format!("d{id}"),
            ..Default::default()
        })),
    }
}

async fn client(stub: Slow) -> RouteStream {
    // The stub on a thread of its own, like a control plane in its own
    // process: a test may block the caller's worker.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            tonic::transport::Server::builder()
                .add_service(RouterServer::new(stub))
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await
        })
    });
    let channel = tonic::transport::Endpoint::from_shared(url)
        .unwrap()
        .executor(crate::link::OnLink)
        .connect_lazy();
    let channel = tonic::service::interceptor::InterceptedService::new(
        channel,
        crate::control_plane::Bearer::default(),
    );
    RouteStream::new(RouterClient::new(channel), RouteRpc::Stream)
}

/// Heartbeats come every 10 ms; a silence 20 times that is no
/// scheduling hiccup of a loaded test machine.
const WAIT: Wait = Wait {
    silence: Duration::from_millis(200),
    longest: Duration::from_secs(2),
};

#[tokio::test]
async fn a_slow_answer_with_heartbeats_is_waited_for_not_taken_for_a_lost_control_plane() {
    // A pin waiting 600 ms for a slow disk sync: three deadlines long.
    let stream = client(Slow {
        delay: Duration::from_millis(600),
        heartbeats: true,
    })
    .await;
    let d = stream
        .route(pb::RouteRequest::default(), WAIT)
        .await
        .unwrap();
    assert!(d.decision_id.starts_with('d'));
}

#[tokio::test]
async fn a_silent_control_plane_is_given_up_on_at_the_deadline() {
    let stream = client(Slow {
        delay: Duration::from_secs(5),
        heartbeats: false,
    })
    .await;
    // The stream opens first, so the wait below is for an answer alone.
    let started = std::time::Instant::now();
    let status = stream
        .route(pb::RouteRequest::default(), WAIT)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // DEADLINE_EXCEEDED: the caller fails static.
    assert!(crate::refusal::to_api_error(&status).is_none());
}

#[tokio::test]
async fn alive_but_too_slow_is_shed_with_retry_after_never_degraded() {
    let stream = client(Slow {
        delay: Duration::from_secs(5),
        heartbeats: true,
    })
    .await;
    let wait = Wait {
        longest: Duration::from_millis(700),
        ..WAIT
    };
    let status = stream
        .route(pb::RouteRequest::default(), wait)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let api = crate::refusal::to_api_error(&status).expect("an answer, not fail static");
    assert_eq!(api.status(), http::StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(flavor = "current_thread")]
async fn a_busy_request_worker_does_not_make_a_healthy_control_plane_look_gone() {
    let stream = client(Slow {
        delay: Duration::from_millis(5),
        heartbeats: false,
    })
    .await;
    stream
        .route(pb::RouteRequest::default(), WAIT)
        .await
        .unwrap();
    let call = stream.route(pb::RouteRequest::default(), WAIT);
    tokio::pin!(call);
    // Sent; then the only request worker is busy (long histories to
    // parse) past the deadline while the answer comes back in 5 ms.
    assert!(futures_util::poll!(&mut call).is_pending());
    std::thread::sleep(Duration::from_millis(500));
    let d = call.await.expect("answered while the worker was busy");
    assert!(d.decision_id.starts_with('d'));
}
