//! Logs and OpenTelemetry traces for both processes. Traces are off unless
//! an OTLP endpoint is configured (`[telemetry] otlp_endpoint`,
//! `--otlp-endpoint`) or the standard `OTEL_EXPORTER_OTLP_ENDPOINT` /
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` variables are set; the endpoint is a
//! collector's base URL, spans go to `{base}/v1/traces` as OTLP/HTTP
//! protobuf. `OTEL_SDK_DISABLED=true` turns them off; `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_EXPORTER_OTLP_HEADERS` work as
//! everywhere. Trace context crosses processes as W3C `traceparent`.

use std::{
    collections::HashMap,
    sync::atomic::{AtomicBool, Ordering},
};

use opentelemetry::{
    Context, global,
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::TracerProvider as _,
};
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{EnvFilter, layer::SubscriberExt, util::SubscriberInitExt};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported: callers skip building spans and carriers
/// when they are not.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The installed tracer provider; dropping it (outside the async runtime)
/// exports what is still buffered.
pub struct Telemetry(Option<SdkTracerProvider>);

impl Telemetry {
    /// Whether spans are exported.
    pub fn enabled(&self) -> bool {
        self.0.is_some()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.0.take()
            && let Err(e) = p.shutdown()
        {
            eprintln!("telemetry: last export failed: {e}");
        }
    }
}

/// The OTLP/HTTP traces URL for `configured` (a collector's base URL), or
/// None when traces are off. With nothing configured, the exporter reads
/// the `OTEL_*` variables itself; `Some("")` means "from the environment".
fn traces_url(configured: Option<&str>) -> Option<String> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return None;
    }
    match configured.map(str::trim).filter(|c| !c.is_empty()) {
        Some(base) => Some(format!("{}/v1/traces", base.trim_end_matches('/'))),
        None if env("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
            || env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some() =>
        {
            Some(String::new())
        }
        None => None,
    }
}

/// Installs logging to stderr (`RUST_LOG`, default `info`) and, when traces
/// are configured, the OTLP exporter for `service`. Call it before starting
/// the async runtime, and drop the result after it ends.
pub fn init(service: &'static str, otlp_endpoint: Option<&str>) -> Telemetry {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let provider = traces_url(otlp_endpoint).and_then(|url| match provider(service, &url) {
        Ok(p) => Some(p),
        Err(e) => {
            eprintln!("{service}: traces off: cannot set up the OTLP exporter: {e}");
            None
        }
    });
    let otel = provider.as_ref().map(|p| {
        ENABLED.store(true, Ordering::Relaxed);
        global::set_text_map_propagator(TraceContextPropagator::new());
        global::set_tracer_provider(p.clone());
        tracing_opentelemetry::layer().with_tracer(p.tracer(service))
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .init();
    Telemetry(provider)
}

fn provider(service: &'static str, url: &str) -> Result<SdkTracerProvider, String> {
    let mut exporter = SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary);
    if !url.is_empty() {
        exporter = exporter.with_endpoint(url);
    }
    let exporter = exporter.build().map_err(|e| e.to_string())?;
    let resource = Resource::builder().with_service_name(service).build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

struct Carrier<'a>(&'a mut HashMap<String, String>);

impl Injector for Carrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

struct Reader<'a>(&'a HashMap<String, String>);

impl Extractor for Reader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// The current span's trace context as W3C headers (`traceparent`,
/// `tracestate`); empty when traces are off or there is no span.
pub fn current_context() -> HashMap<String, String> {
    let mut carrier = HashMap::new();
    if !enabled() {
        return carrier;
    }
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut Carrier(&mut carrier));
    carrier
}

/// The trace context carried in W3C headers.
pub fn context_from(carrier: &HashMap<String, String>) -> Context {
    TraceContextPropagator::new().extract(&Reader(carrier))
}

/// Makes the trace context carried in W3C headers `span`'s parent.
pub fn set_parent(span: &tracing::Span, carrier: &HashMap<String, String>) {
    let _ = span.set_parent(context_from(carrier));
}

/// The OpenTelemetry context of a `tracing` span, to parent spans built
/// with the OpenTelemetry API.
pub fn context_of(span: &tracing::Span) -> Context {
    span.context()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_base_url_sends_spans_to_v1_traces() {
        assert_eq!(
            traces_url(Some("http://collector:4318/")).as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(traces_url(Some("  ")), traces_url(None));
    }
}
