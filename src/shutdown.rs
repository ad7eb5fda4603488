//! Graceful stop of both binaries.

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is
/// called, which is before "ready" is printed: a signal right after "ready"
/// is a clean stop, not the default action's kill.
pub fn signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate()).ok();
    let int = signal(SignalKind::interrupt()).ok();
    async move {
        let recv = |s: Option<tokio::signal::unix::Signal>| async move {
            match s {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = recv(term) => {},
            _ = recv(int) => {},
        }
        tracing::info!("shutting down");
    }
}
