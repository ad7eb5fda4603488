//! Streams the provider's answer to the app chunk by chunk: upstream SSE is
//! parsed into events, each handed to a [`StreamTranslator`] that writes the
//! caller's frames at once; events already at hand share one write. Never
//! waits for more and never buffers to the end; no total deadline, only
//! an idle timeout between events. The outcome is reported when the stream
//! ends: completed, broken (an upstream error, an idle timeout, or an end
//! before the message was complete: a failure of the provider's), or
//! cancelled when the app goes away first (with the usage seen so far).

use std::{
    convert::Infallible,
    pin::Pin,
    time::{Duration, Instant},
};

use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures_util::{FutureExt, Stream, StreamExt};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};

use crate::{
    body::Body,
    outcome::{Ending, Pending},
    translate::StreamTranslator,
};

type Event = eventsource_stream::Event;
type EventError = eventsource_stream::EventStreamError<reqwest::Error>;
type Events = Pin<Box<dyn Stream<Item = Result<Event, EventError>> + Send>>;

struct Relay {
    events: Events,
    translator: Box<dyn StreamTranslator>,
    idle: Duration,
    pending: Option<Pending>,
    attempt_started: Instant,
    first_event: bool,
    /// The first frame went to the app (the ones after it gather events).
    first_frame_sent: bool,
    done: bool,
}

impl Drop for Relay {
    /// Dropped before the stream ended: the app went away — unless the
    /// provider's end was already relayed (an app may hang up on `[DONE]`
    /// before the upstream connection closes).
    fn drop(&mut self) {
        let ending = if self.translator.completed() {
            Ending::Completed
        } else {
            Ending::Cancelled
        };
        self.settle(ending);
    }
}

impl Relay {
    /// Reports the outcome (once) with the usage and finish reason the
    /// translator saw.
    fn settle(&mut self, ending: Ending) {
        if let Some(mut p) = self.pending.take() {
            p.set_finish_reason(self.translator.finish_reason());
            p.finish(self.translator.usage(), ending);
        }
    }

    /// The next frame for the app, or None when the stream is over. The
    /// first frame goes out with the first event that writes anything (time
    /// to first chunk); after it, events already at hand share a frame, up
    /// to [`MAX_FRAME`] bytes and for at most [`MAX_GATHER`]: one write to
    /// the app for a burst instead of one per event. It never waits for an
    /// event that has not arrived.
    async fn next_frame(&mut self) -> Option<Bytes> {
        let mut out = Vec::new();
        while !self.done && out.is_empty() {
            let polled = tokio::time::timeout(self.idle, self.events.next()).await;
            self.take(polled.ok(), &mut out);
        }
        if self.first_frame_sent {
            let until = Instant::now() + MAX_GATHER;
            while !self.done
                && out.len() < MAX_FRAME
                && Instant::now() < until
                && self.take_ready(&mut out).await
            {}
        }
        self.first_frame_sent = true;
        (!out.is_empty()).then(|| Bytes::from(out))
    }

    /// Takes the next event if it is at hand; whether there was one. The
    /// upstream body hands over one chunk per poll of its connection task,
    /// so that task is let run [`READY_ROUNDS`] times before giving up
    /// (measured: with one round, no event was ever found at hand).
    async fn take_ready(&mut self, out: &mut Vec<u8>) -> bool {
        for round in 0..=READY_ROUNDS {
            if let Some(item) = self.events.next().now_or_never() {
                self.take(Some(item), out);
                return true;
            }
            if round < READY_ROUNDS {
                tokio::task::yield_now().await;
            }
        }
        false
    }

    /// Writes what the app gets for one polled item: an event, the upstream
    /// error or end, or (None) the idle timeout.
    fn take(&mut self, polled: Option<Option<Result<Event, EventError>>>, out: &mut Vec<u8>) {
        match polled {
            Some(Some(Ok(event))) => {
                if let Some(p) = &mut self.pending {
                    if self.first_event {
                        self.first_event = false;
                        p.first_byte(self.attempt_started);
                    }
                    // About a token per streamed delta: the estimate
                    // counted if the provider's usage never arrives.
                    p.relayed(1);
                }
                self.translator.push(&event.event, &event.data, out);
            }
            Some(Some(Err(e))) => {
                tracing::warn!(error = %e, "upstream stream broke");
                self.translator
                    .fail("the provider's stream broke off before it finished", out);
                self.done = true;
                self.settle(Ending::Broken);
            }
            Some(None) => {
                // The translator tells a whole answer from a truncated one.
                self.translator.finish(out);
                self.done = true;
                let ending = if self.translator.completed() {
                    Ending::Completed
                } else {
                    tracing::warn!("upstream stream ended before the message was complete");
                    Ending::Broken
                };
                self.settle(ending);
            }
            None => {
                tracing::warn!(
                    idle_ms = self.idle.as_millis() as u64,
                    "upstream stream idle"
                );
                let msg = format!(
                    "the provider sent nothing for {} ms; stream ended",
                    self.idle.as_millis()
                );
                self.translator.fail(&msg, out);
                self.done = true;
                self.settle(Ending::Broken);
            }
        }
    }
}

/// Most bytes of events gathered into one frame for the app.
const MAX_FRAME: usize = 64 * 1024;

/// Longest a frame gathers events already at hand (a fast stream on a busy
/// worker could otherwise keep finding one more).
const MAX_GATHER: Duration = Duration::from_micros(500);

/// Times the relay lets the upstream connection run while gathering events.
const READY_ROUNDS: usize = 3;

/// The app-facing body for a streamed upstream response.
pub fn stream_body(
    resp: reqwest::Response,
    translator: Box<dyn StreamTranslator>,
    idle: Duration,
    pending: Pending,
    attempt_started: Instant,
) -> Body {
    let relay = Relay {
        events: Box::pin(resp.bytes_stream().eventsource()),
        translator,
        idle,
        pending: Some(pending),
        attempt_started,
        first_event: true,
        first_frame_sent: false,
        done: false,
    };
    let frames = futures_util::stream::unfold(relay, |mut relay| async move {
        let frame = relay.next_frame().await?;
        Some((Ok::<_, Infallible>(Frame::data(frame)), relay))
    });
    StreamBody::new(frames).boxed_unsync()
}
