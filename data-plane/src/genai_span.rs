//! One OpenTelemetry span per upstream call, named `{operation} {model}`
//! with the GenAI conventions' attributes ([`keel::semconv::attr`]),
//! children of the sidecar's request span. Built when the request's outcome
//! is settled (a stream's last byte), with the calls' own start and end
//! times, so usage is known; only when traces are exported.

use std::time::SystemTime;

use keel::{
    pb,
    semconv::{attr, keel_attr, operation, provider},
};
use opentelemetry::{
    Array, Context, KeyValue, StringValue, Value,
    trace::{Span as _, SpanKind, Status, Tracer as _},
};

/// When each attempt of a request ran, and under which span.
pub struct CallTimes {
    parent: Context,
    /// When each attempt was sent, in order.
    calls: Vec<SystemTime>,
}

impl CallTimes {
    /// Under the current span, when traces are exported.
    pub fn start() -> Option<Self> {
        keel::telemetry::enabled().then(|| Self {
            parent: keel::telemetry::context_of(&tracing::Span::current()),
            calls: Vec::new(),
        })
    }

    /// An attempt is sent now.
    pub fn begin(&mut self) {
        self.calls.push(SystemTime::now());
    }

    /// Emits a span per attempt of the settled `outcome`; the served one
    /// ends now (its last byte) and carries the answer's `finish_reason`.
    pub fn emit(self, o: &pb::Outcome, finish_reason: Option<&'static str>) {
        let tracer = opentelemetry::global::tracer("keel-sidecar");
        let last = o.attempts.len().saturating_sub(1);
        for (i, (a, start)) in o.attempts.iter().zip(self.calls).enumerate() {
            let Some(t) = &a.target else { continue };
            let served = i == last && o.success;
            let mut attrs = vec![
                KeyValue::new(attr::OPERATION_NAME, operation::CHAT),
                KeyValue::new(attr::PROVIDER_NAME, provider::of(t).to_owned()),
                KeyValue::new(keel_attr::PROVIDER, t.provider.clone()),
                KeyValue::new(attr::REQUEST_MODEL, t.model.clone()),
                KeyValue::new(attr::RESPONSE_MODEL, t.upstream_model.clone()),
                KeyValue::new("keel.profile", o.profile.clone()),
                KeyValue::new("keel.key_ref", t.key_ref.clone()),
                KeyValue::new("http.response.status_code", i64::from(a.status)),
            ];
            if !o.conversation_id.is_empty() {
                attrs.push(KeyValue::new(
                    attr::CONVERSATION_ID,
                    o.conversation_id.clone(),
                ));
            }
            if !a.error_class.is_empty() {
                attrs.push(KeyValue::new(attr::ERROR_TYPE, a.error_class.clone()));
            } else if i == last && !o.success {
                attrs.push(KeyValue::new(attr::ERROR_TYPE, "incomplete"));
            }
            if served && let Some(u) = o.usage {
                attrs.extend([
                    KeyValue::new(attr::USAGE_INPUT_TOKENS, i64::from(u.input_tokens)),
                    KeyValue::new(attr::USAGE_OUTPUT_TOKENS, i64::from(u.output_tokens)),
                    KeyValue::new(
                        attr::USAGE_CACHE_READ_INPUT_TOKENS,
                        i64::from(u.cached_input_tokens),
                    ),
                    KeyValue::new(
                        attr::USAGE_CACHE_CREATION_INPUT_TOKENS,
                        i64::from(u.cache_creation_tokens),
                    ),
                ]);
            }
            if served && let Some(r) = finish_reason {
                attrs.push(KeyValue::new(
                    attr::RESPONSE_FINISH_REASONS,
                    Value::Array(Array::String(vec![StringValue::from(r)])),
                ));
            }
            // The served call ends now (its last byte); another at its answer.
            let end = if served {
                SystemTime::now()
            } else {
                start + std::time::Duration::from_millis(a.latency_ms.into())
            };
            let mut span = tracer
                .span_builder(format!("{} {}", operation::CHAT, t.model))
                .with_kind(SpanKind::Client)
                .with_start_time(start)
                .with_attributes(attrs)
                .start_with_context(&tracer, &self.parent);
            if !served {
                span.set_status(Status::error(a.error_class.clone()));
            }
            span.end_with_timestamp(end);
        }
    }
}
