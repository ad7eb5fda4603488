//! Spend per tenant and per model per UTC day, as charts, from the session
//! store's totals per model and tenant per day (`SessionStore::model_days`:
//! kept across restarts and shared by replicas on Redis). The last
//! [`DAYS`] days; past [`MAX_NAMES`] tenants or models the smallest are
//! summed as "other".

use std::collections::BTreeMap;

use http::StatusCode;
use maud::html;

use super::{
    Reply,
    chart::{self, PALETTE, Series},
    date, html_page, internal, usd,
};
use crate::{
    budget::utc_day,
    router::RouterState,
    store::{ModelDay, now_ms},
};

/// Days shown, today included.
pub const DAYS: u64 = 31;
/// Names shown per chart before the rest is "other".
pub const MAX_NAMES: usize = 20;

/// One row of a table: a tenant's or a model's totals.
#[derive(Debug, Default, PartialEq)]
struct Row {
    name: String,
    /// USD per day, one per label.
    usd: Vec<f64>,
    turns: u64,
    input_tokens: u64,
    output_tokens: u64,
    cached_input_tokens: u64,
}

impl Row {
    fn total(&self) -> f64 {
        self.usd.iter().sum()
    }
}

/// The days `first..=first + n - 1` summed per tenant (or per model), the
/// largest first, the rest past [`MAX_NAMES`] as "other".
fn rows(found: &[ModelDay], first: u64, n: usize, by_model: bool) -> Vec<Row> {
    let mut by: BTreeMap<&str, Row> = BTreeMap::new();
    for d in found {
        let Some(i) = d
            .day
            .checked_sub(first)
            .map(|i| i as usize)
            .filter(|i| *i < n)
        else {
            continue;
        };
        let name = if by_model { &d.model } else { &d.tenant };
        let row = by.entry(name).or_insert_with(|| Row {
            name: name.clone(),
            usd: vec![0.0; n],
            ..Row::default()
        });
        row.usd[i] += d.usd;
        row.turns += d.turns;
        row.input_tokens += d.input_tokens;
        row.output_tokens += d.output_tokens;
        row.cached_input_tokens += d.cached_input_tokens;
    }
    let mut rows: Vec<Row> = by.into_values().collect();
    rows.sort_by(|a, b| b.total().total_cmp(&a.total()));
    if rows.len() > MAX_NAMES {
        let rest = rows.split_off(MAX_NAMES - 1);
        let mut other = Row {
            name: "other".into(),
            usd: vec![0.0; n],
            ..Row::default()
        };
        for r in rest {
            for (o, v) in other.usd.iter_mut().zip(&r.usd) {
                *o += v;
            }
            other.turns += r.turns;
            other.input_tokens += r.input_tokens;
            other.output_tokens += r.output_tokens;
            other.cached_input_tokens += r.cached_input_tokens;
        }
        rows.push(other);
    }
    rows
}

pub fn page(state: &RouterState) -> Reply {
    let today = utc_day(now_ms());
    let first = today + 1 - DAYS;
    let found = match state.store.model_days(first, today) {
        Ok(f) => f,
        Err(e) => return internal(e),
    };
    // From the first day with spend (a fresh store shows today alone).
    let first = found
        .iter()
        .map(|d| d.day)
        .min()
        .unwrap_or(today)
        .max(first);
    let days: Vec<u64> = (first..=today).collect();
    let labels: Vec<String> = days.iter().map(|d| date(*d)[5..].to_owned()).collect();
    let section = |by_model: bool| {
        let rows = rows(&found, first, days.len(), by_model);
        let drawn: Vec<Series<'_>> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| Series {
                name: &r.name,
                color: PALETTE[i % PALETTE.len()],
                values: r.usd.clone(),
            })
            .collect();
        let what = if by_model { "model" } else { "tenant" };
        html! {
            (chart::stacked_bars(&format!("Spend per {what} per day"), &labels, &drawn, |v| format!("${v:.2}")))
            table.spend data-by=(what) {
                thead { tr {
                    th { (what) } @for d in &days { th.n { (date(*d)) } }
                    th.n { "Total" } th.n { "Requests" } th.n { "Input tokens" } th.n { "Cached" } th.n { "Output tokens" }
                } }
                tbody {
                    @for r in &rows {
                        tr {
                            td { (r.name) }
                            @for v in &r.usd { td.n { (usd(*v)) } }
                            td.n { (usd(r.total())) }
                            td.n { (r.turns) }
                            td.n { (r.input_tokens) }
                            td.n { (r.cached_input_tokens) }
                            td.n { (r.output_tokens) }
                        }
                    }
                    @if rows.is_empty() {
                        tr { td colspan=(days.len() + 6) .muted { "Nothing reported in these days." } }
                    }
                }
            }
        }
    };
    let body = html! {
        h1 { "Spend" }
        p.muted { "Reported spend at catalog prices per UTC day, the last " (DAYS) " days, from the session store (kept across restarts). Requests: served or cut short with a cost." }
        h2 { "Per tenant" }
        (section(false))
        h2 { "Per model" }
        (section(true))
    };
    html_page(StatusCode::OK, "Spend", body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(day: u64, model: &str, tenant: &str, usd: f64) -> ModelDay {
        ModelDay {
            day,
            model: model.into(),
            tenant: tenant.into(),
            usd,
            turns: 1,
            ..ModelDay::default()
        }
    }

    #[test]
    fn spend_is_summed_per_day_and_name_and_the_rest_is_other() {
        let found = [
            d(100, "small", "acme", 1.0),
            d(100, "strong", "acme", 2.0),
            d(101, "small", "beta", 0.5),
            d(99, "small", "acme", 7.0),
        ];
        let tenants = rows(&found, 100, 2, false);
        let pairs: Vec<(&str, &[f64], u64)> = tenants
            .iter()
            .map(|r| (r.name.as_str(), r.usd.as_slice(), r.turns))
            .collect();
        assert_eq!(
            pairs,
            [("acme", &[3.0, 0.0][..], 2), ("beta", &[0.0, 0.5][..], 1)]
        );
        let models = rows(&found, 100, 2, true);
        assert_eq!(models[0].name, "strong");
        assert_eq!(models[1].usd, [1.0, 0.5]);
        let many: Vec<ModelDay> = (0..MAX_NAMES + 5)
            .map(|i| d(100, "m", &format!("t{i:02}"), 1.0 + i as f64))
            .collect();
        let tenants = rows(&many, 100, 1, false);
        assert_eq!(tenants.len(), MAX_NAMES);
        let other = tenants.last().unwrap();
        assert_eq!((other.name.as_str(), other.turns), ("other", 6));
        assert_eq!(other.total(), (1..=6).map(f64::from).sum::<f64>());
    }
}
