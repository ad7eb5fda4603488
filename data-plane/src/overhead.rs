//! `X-Keel-Overhead-Ms`: the time Keel itself added to a response, that is
//! the time from accept to the response head less the time spent waiting on
//! providers (each attempt's request to its response head, and the body of
//! a non-streamed answer). The waits are summed in a task-local clock, so
//! the request path only wraps its provider awaits in [`waiting`].

use std::{
    cell::Cell,
    future::Future,
    time::{Duration, Instant},
};

use http::{HeaderMap, HeaderValue};

/// Response header naming Keel's own time, in milliseconds (fractional).
pub const HEADER: &str = "x-keel-overhead-ms";

tokio::task_local! {
    static PROVIDER_WAIT: Cell<Duration>;
}

/// Runs `f` (one request) with a provider clock; returns its output and the
/// time Keel itself spent, measured from `started`.
pub async fn scope<T>(started: Instant, f: impl Future<Output = T>) -> (T, Duration) {
    PROVIDER_WAIT
        .scope(Cell::new(Duration::ZERO), async move {
            let out = f.await;
            let waited = PROVIDER_WAIT.with(Cell::get);
            (out, started.elapsed().saturating_sub(waited))
        })
        .await
}

/// Awaits `f`, a wait on a provider, and adds its time to the request's
/// provider clock (a no-op outside [`scope`]).
pub async fn waiting<F: Future>(f: F) -> F::Output {
    let t = Instant::now();
    let out = f.await;
    let _ = PROVIDER_WAIT.try_with(|c| c.set(c.get() + t.elapsed()));
    out
}

/// Sets the header, in milliseconds with microsecond precision.
pub fn stamp(headers: &mut HeaderMap, own: Duration) {
    let ms = format!("{:.3}", own.as_secs_f64() * 1000.0);
    if let Ok(v) = HeaderValue::from_str(&ms) {
        headers.insert(HEADER, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn provider_waits_are_left_out_of_the_overhead() {
        let started = Instant::now();
        let ((), own) = scope(started, async {
            waiting(tokio::time::sleep(Duration::from_millis(120))).await;
        })
        .await;
        let total = started.elapsed();
        assert!(own < Duration::from_millis(60), "own {own:?}");
        assert!(total >= Duration::from_millis(120));
        let mut h = HeaderMap::new();
        stamp(&mut h, Duration::from_micros(1500));
        assert_eq!(h[HEADER], "1.500");
    }

    #[tokio::test]
    async fn keel_time_counts_as_overhead() {
        let ((), own) = scope(Instant::now(), async {
            tokio::time::sleep(Duration::from_millis(30)).await;
        })
        .await;
        assert!(own >= Duration::from_millis(30), "own {own:?}");
    }
}
