//! The write-behind thread: every `every`, and at once when someone waits in
//! [`Flusher::request`], it runs a write pass of its target. A std thread,
//! not a tokio task: a pass is sled work that may take milliseconds, and the
//! store is also used without a runtime (tools, tests). The thread holds
//! only a `Weak` to its target and is stopped (after a last pass) by
//! [`Flusher::stop`] or on drop.

use std::{
    sync::{Arc, Condvar, Mutex, Weak},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use tokio::sync::oneshot;

use super::StoreError;

/// What the thread writes.
pub(super) trait WriteBack: Send + Sync + 'static {
    /// Writes what is pending; with `sync`, makes everything written so far
    /// durable as well.
    fn write_back(&self, sync: bool) -> Result<(), StoreError>;
}

#[derive(Default)]
struct State {
    /// Answered after the next pass that starts after they were queued.
    waiters: Vec<oneshot::Sender<bool>>,
    stop: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

/// Handle of the thread.
pub(super) struct Flusher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Flusher {
    /// Starts the thread writing `target` back every `every`.
    pub fn start(target: Weak<dyn WriteBack>, every: Duration) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let thread = std::thread::Builder::new()
            .name("keel-store-flush".into())
            .spawn({
                let shared = Arc::clone(&shared);
                move || run(&shared, &target, every)
            })?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// A pass with `sync` that starts after this call. The answer is
    /// whether it succeeded; an error means the thread is gone.
    pub fn request(&self) -> oneshot::Receiver<bool> {
        let (tx, rx) = oneshot::channel();
        let mut state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        if !state.stop {
            state.waiters.push(tx);
            self.shared.wake.notify_one();
        }
        rx
    }

    /// Runs a last pass and ends the thread; idempotent.
    pub fn stop(&mut self) {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stop = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("session store flusher panicked");
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Marks the thread gone when it ends, even by a panic: later requests
/// then fail at once instead of waiting for a pass that never comes.
struct Gone<'a>(&'a Shared);

impl Drop for Gone<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        state.stop = true;
        state.waiters.clear();
    }
}

fn run(shared: &Shared, target: &Weak<dyn WriteBack>, every: Duration) {
    let _gone = Gone(shared);
    let mut next = Instant::now() + every;
    loop {
        let (waiters, stop) = {
            let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                let now = Instant::now();
                if !state.waiters.is_empty() || state.stop || now >= next {
                    break;
                }
                state = shared
                    .wake
                    .wait_timeout(state, next - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            (std::mem::take(&mut state.waiters), state.stop)
        };
        next = Instant::now() + every;
        // The store is gone: nothing left to write.
        let Some(target) = target.upgrade() else {
            return;
        };
        let ok = match target.write_back(!waiters.is_empty() || stop) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "cannot write sessions back to the store");
                false
            }
        };
        drop(target);
        for tx in waiters {
            let _ = tx.send(ok);
        }
        if stop {
            return;
        }
    }
}
