//! Streams the provider's answer to the app chunk by chunk: upstream SSE is
//! parsed into events, each handed to a [`StreamTranslator`] that writes the
//! caller's frames at once. Never buffers to the end; no total deadline, only
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
use futures_util::{Stream, StreamExt};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};

use crate::{
    body::Body,
    outcome::{Ending, Pending},
    translate::StreamTranslator,
};

type Events = Pin<
    Box<
        dyn Stream<
                Item = Result<
                    eventsource_stream::Event,
                    eventsource_stream::EventStreamError<reqwest::Error>,
                >,
            > + Send,
    >,
>;

struct Relay {
    events: Events,
    translator: Box<dyn StreamTranslator>,
    idle: Duration,
    pending: Option<Pending>,
    attempt_started: Instant,
    first_event: bool,
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

    /// The next frame for the app, or None when the stream is over.
    async fn next_frame(&mut self) -> Option<Bytes> {
        let mut out = Vec::new();
        while !self.done {
            match tokio::time::timeout(self.idle, self.events.next()).await {
                Ok(Some(Ok(event))) => {
                    if let Some(p) = &mut self.pending {
                        if self.first_event {
                            self.first_event = false;
                            p.first_byte(self.attempt_started);
                        }
                        // About a token per streamed delta: the estimate
                        // counted if the provider's usage never arrives.
                        p.relayed(1);
                    }
                    self.translator.push(&event.event, &event.data, &mut out);
                }
                Ok(Some(Err(e))) => {
                    tracing::warn!(error = %e, "upstream stream broke");
                    self.translator.fail(
                        "the provider's stream broke off before it finished",
                        &mut out,
                    );
                    self.done = true;
                    self.settle(Ending::Broken);
                }
                Ok(None) => {
                    // The translator tells a whole answer from a truncated one.
                    self.translator.finish(&mut out);
                    self.done = true;
                    let ending = if self.translator.completed() {
                        Ending::Completed
                    } else {
                        tracing::warn!("upstream stream ended before the message was complete");
                        Ending::Broken
                    };
                    self.settle(ending);
                }
                Err(_) => {
                    tracing::warn!(
                        idle_ms = self.idle.as_millis() as u64,
                        "upstream stream idle"
                    );
                    let msg = format!(
                        "the provider sent nothing for {} ms; stream ended",
                        self.idle.as_millis()
                    );
                    self.translator.fail(&msg, &mut out);
                    self.done = true;
                    self.settle(Ending::Broken);
                }
            }
            if !out.is_empty() {
                return Some(Bytes::from(out));
            }
        }
        None
    }
}

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
        done: false,
    };
    let frames = futures_util::stream::unfold(relay, |mut relay| async move {
        let frame = relay.next_frame().await?;
        Some((Ok::<_, Infallible>(Frame::data(frame)), relay))
    });
    StreamBody::new(frames).boxed_unsync()
}
