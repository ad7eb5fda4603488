//! Models and providers, live: per deployment its breaker, error rate and
//! EWMA time to first token; per provider key the requests in flight and
//! whether a 429 parked it, until when. The page refreshes itself.

use std::time::{Instant, SystemTime};

use http::HeaderValue;
use http::StatusCode;
use maud::html;

use super::{Reply, html_page, time};
use crate::router::RouterState;

pub fn page(state: &RouterState) -> Reply {
    let catalog = &state.config.catalog;
    let now = Instant::now();
    let wall_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let body = html! {
        h1 { "Models and providers" }
        h2 { "Deployments" }
        table #deployments {
            thead { tr {
                th { "Model" } th { "Provider" } th { "Upstream id" } th { "Breaker" }
                th.n { "Error rate" } th.n { "Successes / failures" } th.n { "EWMA TTFT" } th.n { "EWMA latency" }
            } }
            tbody {
                @for (i, d) in catalog.deployments().iter().enumerate() {
                    @let s = state.signals.snapshot(i);
                    @let breaker = s.breaker.state_name();
                    @let total = s.successes + s.failures;
                    tr {
                        td { (d.name) }
                        td { (catalog.provider_of(d).name) }
                        td.muted { (d.upstream_model) }
                        td { span.badge.ok[breaker == "closed"].bad[breaker == "open"].warn[breaker == "half_open"] { (breaker) } }
                        td.n { @if total > 0 { (format!("{:.1}%", 100.0 * s.failures as f64 / total as f64)) } @else { "—" } }
                        td.n { (s.successes) " / " (s.failures) }
                        td.n { (s.ttft_ms.map_or("—".to_owned(), |v| format!("{v:.0} ms"))) }
                        td.n { (s.latency_ms.map_or("—".to_owned(), |v| format!("{v:.0} ms"))) }
                    }
                }
            }
        }
        h2 { "Provider keys" }
        table #keys {
            thead { tr {
                th { "Provider" } th { "Key reference" } th.n { "In flight" } th.n { "Limit" }
                th.n { "Headroom" } th.n { "429s" } th { "Parked until (UTC)" }
            } }
            tbody {
                @for (p, provider) in catalog.providers().iter().enumerate() {
                    @for (k, key) in provider.keys.iter().enumerate() {
                        @let snap = state.capacity.snapshot(p, k, now);
                        @let parked = state.capacity.parked_for(p, k, now);
                        tr {
                            td { (provider.name) }
                            td { code { (key.key_ref) } }
                            td.n { (snap.in_flight) }
                            td.n { @match state.capacity.max_in_flight(p, k) { 0 => "—", n => (n) } }
                            td.n { (snap.headroom.map_or("—".to_owned(), |h| format!("{:.0}%", h * 100.0))) }
                            td.n { (snap.rate_limited) }
                            td {
                                @if let Some(d) = parked {
                                    span.badge.bad { "parked" } " " (time(wall_ms + d.as_millis() as u64)) " (" (d.as_secs() + 1) " s)"
                                } @else { span.muted { "—" } }
                            }
                        }
                    }
                }
            }
        }
        p.muted { "As of " (time(wall_ms)) " UTC; refreshed every 5 s." }
    };
    let mut r = html_page(StatusCode::OK, "Models and providers", body);
    // Live without a script: the browser reloads the page every 5 s.
    r.headers_mut()
        .insert("refresh", HeaderValue::from_static("5"));
    r
}
