//! Spend per tenant and per model per UTC day, as charts: kept in memory
//! from reports since the control plane started (at most [`DAYS`] days and
//! [`MAX_NAMES`] tenants or models a day; more are summed as "other").

use std::{collections::BTreeMap, sync::Mutex};

use http::StatusCode;
use maud::html;

use super::{
    Reply,
    chart::{self, PALETTE, Series},
    date, html_page, usd,
};
use crate::{budget::utc_day, router::RouterState, store::now_ms};

/// Days kept.
pub const DAYS: u64 = 31;
/// Names kept per day and kind before the rest is "other".
pub const MAX_NAMES: usize = 200;

#[derive(Default)]
struct Days {
    /// `day → name → USD`.
    tenants: BTreeMap<u64, BTreeMap<String, f64>>,
    models: BTreeMap<u64, BTreeMap<String, f64>>,
}

/// Spend per day by tenant and by model.
#[derive(Default)]
pub struct SpendLedger(Mutex<Days>);

fn add(days: &mut BTreeMap<u64, BTreeMap<String, f64>>, day: u64, name: &str, usd: f64) {
    let names = days.entry(day).or_default();
    let name = if names.len() >= MAX_NAMES && !names.contains_key(name) {
        "other"
    } else {
        name
    };
    *names.entry(name.to_owned()).or_default() += usd;
    while days.len() as u64 > DAYS {
        days.pop_first();
    }
}

impl SpendLedger {
    /// Adds one reported request's cost.
    pub fn add(&self, day: u64, tenant: &str, model: &str, usd: f64) {
        if usd <= 0.0 {
            return;
        }
        let mut d = self.0.lock().unwrap_or_else(|e| e.into_inner());
        add(&mut d.tenants, day, tenant, usd);
        add(&mut d.models, day, model, usd);
    }

    /// The last `DAYS` days up to `today` (labels) and one series per name.
    fn series(&self, today: u64, by_model: bool) -> (Vec<u64>, Vec<(String, Vec<f64>)>) {
        let d = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let days = if by_model { &d.models } else { &d.tenants };
        let first = days
            .keys()
            .next()
            .copied()
            .unwrap_or(today)
            .max(today.saturating_sub(DAYS - 1));
        let labels: Vec<u64> = (first..=today).collect();
        let mut names: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        for (i, day) in labels.iter().enumerate() {
            for (name, usd) in days.get(day).into_iter().flatten() {
                names.entry(name).or_insert_with(|| vec![0.0; labels.len()])[i] += usd;
            }
        }
        let series = names.into_iter().map(|(n, v)| (n.to_owned(), v)).collect();
        (labels, series)
    }
}

pub fn page(state: &RouterState) -> Reply {
    let today = utc_day(now_ms());
    let section = |by_model: bool| {
        let (days, series) = state.spend.series(today, by_model);
        let labels: Vec<String> = days.iter().map(|d| date(*d)[5..].to_owned()).collect();
        let drawn: Vec<Series<'_>> = series
            .iter()
            .enumerate()
            .map(|(i, (name, values))| Series {
                name,
                color: PALETTE[i % PALETTE.len()],
                values: values.clone(),
            })
            .collect();
        let what = if by_model { "model" } else { "tenant" };
        html! {
            (chart::stacked_bars(&format!("Spend per {what} per day"), &labels, &drawn, |v| format!("${v:.2}")))
            table.spend data-by=(what) {
                thead { tr { th { (what) } @for d in &days { th.n { (date(*d)) } } th.n { "Total" } } }
                tbody {
                    @for (name, values) in &series {
                        tr {
                            td { (name) }
                            @for v in values { td.n { (usd(*v)) } }
                            td.n { (usd(values.iter().sum())) }
                        }
                    }
                }
            }
        }
    };
    let body = html! {
        h1 { "Spend" }
        p.muted { "Reported spend at catalog prices, per UTC day, since this control plane started (at most " (DAYS) " days)." }
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

    #[test]
    fn spend_is_summed_per_day_and_name_and_old_days_go() {
        let l = SpendLedger::default();
        l.add(100, "acme", "small", 1.0);
        l.add(100, "acme", "strong", 2.0);
        l.add(101, "beta", "small", 0.5);
        let (days, tenants) = l.series(101, false);
        assert_eq!(days, [100, 101]);
        assert_eq!(
            tenants,
            [
                ("acme".into(), vec![3.0, 0.0]),
                ("beta".into(), vec![0.0, 0.5])
            ]
        );
        let (_, models) = l.series(101, true);
        assert_eq!(models[0], ("small".into(), vec![1.0, 0.5]));
        l.add(100 + DAYS, "acme", "small", 1.0);
        let (days, _) = l.series(100 + DAYS, false);
        assert_eq!(days.first(), Some(&101));
    }
}
