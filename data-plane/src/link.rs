//! The control-plane link's own thread: the connections to the control
//! plane (tonic's channel workers, HTTP/2 connection tasks) and the reader of
//! each `RouteStream` run on a small runtime of their own. A request worker
//! busy with long histories then cannot hold a `Route` answer in the socket
//! until its deadline passes and make a healthy control plane look gone
//! (the sidecar failed static under load before: the answers were there,
//! nobody read them).

use std::{future::Future, sync::OnceLock};

use tokio::{runtime::Handle, task::JoinHandle};

/// The link's runtime, started on first use and kept for the process.
fn handle() -> &'static Handle {
    static LINK: OnceLock<Handle> = OnceLock::new();
    LINK.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("keel-cp-link")
            .build()
            .expect("cannot start the control-plane link's runtime");
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name("keel-cp-link".into())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))
            .expect("cannot start the control-plane link's thread");
        handle
    })
}

/// Runs `f` on the link's thread.
pub fn spawn<F>(f: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    handle().spawn(f)
}

/// Tonic's executor for the control-plane channels: their tasks run on the
/// link's thread.
#[derive(Clone, Copy, Debug, Default)]
pub struct OnLink;

impl<F> hyper::rt::Executor<F> for OnLink
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, fut: F) {
        spawn(fut);
    }
}
