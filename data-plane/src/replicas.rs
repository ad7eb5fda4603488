//! Several control-plane replicas (`--control-plane URL,URL,...`): `Route`
//! goes to them in turn, and a replica that fails (unreachable, too slow,
//! or an error that is not an answer about the request) is left out for
//! [`DOWN_FOR`] while the same request goes to the next one. Only when no
//! replica answers does the caller fail static. Each replica keeps its own
//! channel and `RouteStream`.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use keel::pb::{self, admin_client::AdminClient, router_client::RouterClient};
use tonic::{Code, Status};

use crate::{
    control_plane::ControlPlaneChannel,
    route_stream::{RouteRpc, RouteStream, Wait},
};

/// How long a failed replica is skipped (unless every replica is).
pub const DOWN_FOR: Duration = Duration::from_secs(2);

/// One control-plane replica.
pub struct Replica {
    pub url: String,
    pub router: RouterClient<ControlPlaneChannel>,
    pub stream: RouteStream,
    pub admin: AdminClient<ControlPlaneChannel>,
    down_until: Mutex<Option<Instant>>,
}

impl Replica {
    fn new(url: String, channel: ControlPlaneChannel, rpc: RouteRpc) -> Self {
        let router = RouterClient::new(channel.clone());
        Self {
            url,
            stream: RouteStream::new(router.clone(), rpc),
            router,
            admin: AdminClient::new(channel),
            down_until: Mutex::new(None),
        }
    }

    fn is_down(&self, now: Instant) -> bool {
        self.down_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|t| t > now)
    }

    fn mark(&self, down: bool) {
        let mut until = self.down_until.lock().unwrap_or_else(|e| e.into_inner());
        if down && until.is_none_or(|t| t <= Instant::now()) {
            tracing::warn!(control_plane = %self.url, "control-plane replica failing; trying the others");
        }
        *until = down.then(|| Instant::now() + DOWN_FOR);
    }
}

/// Whether `status` says the replica could not decide (as opposed to an
/// answer about the request, which another replica would give too).
pub fn replica_failed(status: &Status) -> bool {
    !matches!(
        status.code(),
        Code::InvalidArgument
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::NotFound
            | Code::ResourceExhausted
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::Aborted
    )
}

/// The replicas and whose turn it is.
pub struct Replicas {
    all: Vec<Replica>,
    next: AtomicUsize,
}

impl Replicas {
    /// One replica per channel (see `control_plane::channels`).
    pub fn new(channels: Vec<(String, ControlPlaneChannel)>, rpc: RouteRpc) -> Self {
        let all = channels
            .into_iter()
            .map(|(url, channel)| Replica::new(url, channel, rpc))
            .collect();
        Self {
            all,
            next: AtomicUsize::new(0),
        }
    }

    /// Every replica's stream reports decisions that come back after their
    /// caller stopped waiting.
    pub fn report_orphans_to(&self, reporter: crate::report::WeakReporter) {
        for r in &self.all {
            r.stream.report_orphans_to(reporter.clone());
        }
    }

    /// The replicas to try, in order: the healthy ones starting with the
    /// next in turn, then those marked down (a last resort).
    pub fn order(&self) -> Vec<&Replica> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.all.len();
        let now = Instant::now();
        let turn = (0..n).map(|i| &self.all[(start + i) % n]);
        let (up, down): (Vec<&Replica>, Vec<&Replica>) = turn.partition(|r| !r.is_down(now));
        up.into_iter().chain(down).collect()
    }

    /// Calls `f` on each replica in [`Replicas::order`] until one answers;
    /// each try has `timeout`. The last failure when none does.
    pub async fn call<'a, T, F, Fut>(&'a self, timeout: Duration, f: F) -> Result<T, Status>
    where
        F: Fn(&'a Replica) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let mut last = Status::unavailable("no control-plane replica");
        for replica in self.order() {
            let status = match tokio::time::timeout(timeout, f(replica)).await {
                Ok(Ok(answer)) => {
                    replica.mark(false);
                    return Ok(answer);
                }
                Ok(Err(status)) if !replica_failed(&status) => {
                    // An answer: another replica would say the same.
                    replica.mark(false);
                    return Err(status);
                }
                Ok(Err(status)) => status,
                Err(_) => Status::deadline_exceeded("route deadline passed"),
            };
            replica.mark(true);
            last = status;
        }
        Err(last)
    }

    /// `Route` on the replicas in turn.
    pub async fn route(&self, wait: Wait, req: pb::RouteRequest) -> Result<pb::Decision, Status> {
        if let [only] = self.all.as_slice() {
            // One control plane: no copy of the request for a retry.
            return only.stream.route(req, wait).await;
        }
        // Each try bounds itself (the outer bound never fires first).
        let outer = wait.longest.max(wait.silence) + wait.silence;
        self.call(outer, |r| r.stream.route(req.clone(), wait))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn replicas_take_turns_and_a_failed_one_goes_last() {
        let plain = |url: &str| {
            let channel = tonic::transport::Channel::from_shared(url.to_owned())
                .unwrap()
                .connect_lazy();
            (
                url.to_owned(),
                tonic::service::interceptor::InterceptedService::new(
                    channel,
                    crate::control_plane::Bearer::default(),
                ),
            )
        };
        let r = Replicas::new(
            vec![plain("http://127.0.0.1:1"), plain("http://127.0.0.1:2")],
            RouteRpc::Unary,
        );
        let urls = |order: Vec<&Replica>| order.iter().map(|r| r.url.clone()).collect::<Vec<_>>();
        let first = urls(r.order());
        assert_eq!(first.len(), 2);
        assert_ne!(first, urls(r.order()), "turns alternate");
        r.all[0].mark(true);
        for _ in 0..3 {
            assert_eq!(
                urls(r.order())[1],
                "http://127.0.0.1:1",
                "down: a last resort"
            );
        }
        assert!(replica_failed(&Status::unavailable("gone")));
        assert!(replica_failed(&Status::internal("store down")));
        assert!(!replica_failed(&Status::invalid_argument("bad")));
    }
}
