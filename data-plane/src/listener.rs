//! Accepting connections without being taken down by them: at most
//! `--max-connections` open at once (the next accept waits for a slot, the
//! kernel's backlog holds the rest), and accept errors (at the descriptor
//! limit: EMFILE, ENFILE) back off instead of spinning, logged at most once
//! per [`LOG_EVERY`] with a count of those not logged.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
};

/// Longest pause after a failed accept.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// First pause after a failed accept.
const MIN_BACKOFF: Duration = Duration::from_millis(5);
/// At most one accept-error warning per this long.
pub const LOG_EVERY: Duration = Duration::from_secs(5);

/// The listener with its connection limit and error back-off.
pub struct Acceptor {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    backoff: Duration,
    log: RateLimitedLog,
}

impl Acceptor {
    pub fn new(listener: TcpListener, max_connections: usize) -> Self {
        Self {
            listener,
            slots: Arc::new(Semaphore::new(max_connections.max(1))),
            backoff: Duration::ZERO,
            log: RateLimitedLog::default(),
        }
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// The next connection and its slot (held until the connection ends).
    /// Cancel-safe: nothing is lost when the caller stops waiting.
    pub async fn accept(&mut self) -> (TcpStream, OwnedSemaphorePermit) {
        // The semaphore is never closed.
        let slot = loop {
            if let Ok(slot) = Arc::clone(&self.slots).acquire_owned().await {
                break slot;
            }
        };
        loop {
            match self.listener.accept().await {
                Ok((stream, _)) => {
                    self.backoff = Duration::ZERO;
                    return (stream, slot);
                }
                Err(e) => {
                    self.backoff = (self.backoff * 2).clamp(MIN_BACKOFF, MAX_BACKOFF);
                    self.log.warn(Instant::now(), |suppressed| {
                        tracing::warn!(error = %e, suppressed, backoff_ms = self.backoff.as_millis() as u64, "accept failed");
                    });
                    tokio::time::sleep(self.backoff).await;
                }
            }
        }
    }
}

/// Whether the client has sent enough to tell HTTP/1 from HTTP/2 within
/// `deadline`. hyper's protocol detection waits for these bytes with no
/// deadline of its own (its header deadline starts after it), so a client
/// that connects and says nothing would hold the connection forever.
pub async fn speaks_within(stream: &TcpStream, deadline: Duration) -> bool {
    const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let wait = async {
        let mut buf = [0u8; H2_PREFACE.len()];
        loop {
            match stream.peek(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) if n == buf.len() || buf[..n] != H2_PREFACE[..n] => return true,
                // A prefix of the HTTP/2 preface: wait for more.
                Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    };
    tokio::time::timeout(deadline, wait).await.unwrap_or(false)
}

/// Logs at most once per [`LOG_EVERY`], counting what it did not log.
#[derive(Default)]
pub struct RateLimitedLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    /// Calls `log` with the number of events not logged since the last one,
    /// unless one was logged less than [`LOG_EVERY`] ago.
    pub fn warn(&mut self, now: Instant, log: impl FnOnce(u64)) -> bool {
        if self.last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            self.suppressed += 1;
            return false;
        }
        log(std::mem::take(&mut self.suppressed));
        self.last = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storm_of_errors_logs_once_per_period_with_a_count() {
        let mut log = RateLimitedLog::default();
        let t0 = Instant::now();
        let mut logged = Vec::new();
        for i in 0..10_000u32 {
            let now = t0 + Duration::from_micros(u64::from(i) * 1000); // 10 s of errors
            log.warn(now, |suppressed| logged.push(suppressed));
        }
        assert_eq!(logged.len(), 2, "{logged:?}");
        assert_eq!(logged[0], 0);
        assert_eq!(logged[1], 4999);
    }

    #[tokio::test]
    async fn connections_beyond_the_limit_wait_for_a_slot() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut acceptor = Acceptor::new(listener, 1);
        let _a = TcpStream::connect(addr).await.unwrap();
        let _b = TcpStream::connect(addr).await.unwrap();
        let (first, slot) = acceptor.accept().await;
        let second = tokio::time::timeout(Duration::from_millis(100), acceptor.accept()).await;
        assert!(
            second.is_err(),
            "the second connection waits while the first holds the slot"
        );
        drop((first, slot));
        let second = tokio::time::timeout(Duration::from_secs(5), acceptor.accept()).await;
        assert!(second.is_ok());
    }
}
