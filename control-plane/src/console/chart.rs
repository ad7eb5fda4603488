//! Charts as inline SVG, drawn on the server: a line per series over an x
//! axis of labels, or bars stacked per label. Small on purpose: the console
//! needs two shapes, not a charting library and a script to run it.

use maud::{Markup, html};

const W: f64 = 560.0;
const H: f64 = 200.0;
const LEFT: f64 = 64.0;
const BOTTOM: f64 = 28.0;
const TOP: f64 = 12.0;

/// One named series of values, one per x label.
pub struct Series<'a> {
    pub name: &'a str,
    pub color: &'a str,
    pub values: Vec<f64>,
}

fn max_of(series: &[Series<'_>], stacked: bool) -> f64 {
    let n = series.iter().map(|s| s.values.len()).max().unwrap_or(0);
    let peak = if stacked {
        (0..n)
            .map(|i| series.iter().filter_map(|s| s.values.get(i)).sum::<f64>())
            .fold(0.0, f64::max)
    } else {
        series
            .iter()
            .flat_map(|s| s.values.iter().copied())
            .fold(0.0, f64::max)
    };
    if peak > 0.0 { peak } else { 1.0 }
}

fn y(v: f64, max: f64) -> f64 {
    TOP + (H - TOP - BOTTOM) * (1.0 - v / max)
}

/// Axes, the y scale (`fmt` formats its values), x labels (thinned to fit)
/// and a legend.
fn frame(labels: &[String], series: &[Series<'_>], max: f64, fmt: fn(f64) -> String) -> Markup {
    let step = (labels.len() / 10).max(1);
    let slot = (W - LEFT) / labels.len().max(1) as f64;
    html! {
        line x1=(LEFT) y1=(TOP) x2=(LEFT) y2=(H - BOTTOM) stroke="#889" {}
        line x1=(LEFT) y1=(H - BOTTOM) x2=(W) y2=(H - BOTTOM) stroke="#889" {}
        @for f in [0.0, 0.5, 1.0] {
            text x=(LEFT - 4.0) y=(y(max * f, max) + 4.0) font-size="10" text-anchor="end" fill="#556" {
                (fmt(max * f))
            }
        }
        @for (i, l) in labels.iter().enumerate().filter(|(i, _)| i % step == 0) {
            text x=(LEFT + slot * (i as f64 + 0.5)) y=(H - BOTTOM + 14.0) font-size="10" text-anchor="middle" fill="#556" {
                (l)
            }
        }
        @for (i, s) in series.iter().enumerate() {
            rect x=(LEFT + 8.0 + 120.0 * i as f64) y="2" width="8" height="8" fill=(s.color) {}
            text x=(LEFT + 20.0 + 120.0 * i as f64) y="10" font-size="10" fill="#334" { (s.name) }
        }
    }
}

/// Lines over `labels`.
pub fn lines(
    title: &str,
    labels: &[String],
    series: &[Series<'_>],
    fmt: fn(f64) -> String,
) -> Markup {
    let max = max_of(series, false);
    let slot = (W - LEFT) / labels.len().max(1) as f64;
    html! {
        svg role="img" aria-label=(title) width=(W) height=(H) viewBox={"0 0 " (W) " " (H)} {
            title { (title) }
            (frame(labels, series, max, fmt))
            @for s in series {
                @let points = s.values.iter().enumerate()
                    .map(|(i, v)| format!("{:.1},{:.1}", LEFT + slot * (i as f64 + 0.5), y(*v, max)))
                    .collect::<Vec<_>>().join(" ");
                polyline points=(points) fill="none" stroke=(s.color) stroke-width="2" {}
                @for (i, v) in s.values.iter().enumerate() {
                    circle cx=(LEFT + slot * (i as f64 + 0.5)) cy=(y(*v, max)) r="2.5" fill=(s.color) {}
                }
            }
        }
    }
}

/// Bars stacked per label.
pub fn stacked_bars(
    title: &str,
    labels: &[String],
    series: &[Series<'_>],
    fmt: fn(f64) -> String,
) -> Markup {
    let max = max_of(series, true);
    let slot = (W - LEFT) / labels.len().max(1) as f64;
    let width = (slot * 0.7).max(1.0);
    let mut bars = Vec::new();
    for (i, label) in labels.iter().enumerate() {
        let mut base = 0.0;
        for s in series {
            let v = s.values.get(i).copied().unwrap_or(0.0);
            if v > 0.0 {
                let top = y(base + v, max);
                let x = LEFT + slot * i as f64 + (slot - width) / 2.0;
                let tip = format!("{} {label}: {}", s.name, fmt(v));
                bars.push((x, top, y(base, max) - top, s.color, tip));
            }
            base += v;
        }
    }
    html! {
        svg role="img" aria-label=(title) width=(W) height=(H) viewBox={"0 0 " (W) " " (H)} {
            title { (title) }
            (frame(labels, series, max, fmt))
            @for (x, top, height, color, tip) in &bars {
                rect x=(x) y=(top) width=(width) height=(height) fill=(color) { title { (tip) } }
            }
        }
    }
}

/// Distinct colours for series, in order.
pub const PALETTE: [&str; 8] = [
    "#3b6fd8", "#e08a1e", "#2c9c5a", "#c0392b", "#8e44ad", "#16a3b8", "#7f8c8d", "#b8860b",
];
