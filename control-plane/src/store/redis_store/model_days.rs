//! Spend per model per UTC day on Redis: one hash per day
//! (`keel:md:{day}`) whose fields are `{model}\0{tenant}\0{total}`, grown by
//! atomic increments (one MULTI per report, so replicas never lose one)
//! and expiring [`MODEL_DAYS_KEPT`] days after their day, as tenant days.

use std::collections::BTreeMap;

use super::{RedisStore, link::within};
use crate::store::{MODEL_DAYS_KEPT, ModelDay, StoreError};

/// Most days one read asks for (a range is clamped to the last ones).
const MAX_DAYS: u64 = 400;

fn day_key(day: u64) -> String {
    format!("keel:md:{day}")
}

fn field(model: &str, tenant: &str, total: &str) -> Vec<u8> {
    [
        model.as_bytes(),
        b"\0",
        tenant.as_bytes(),
        b"\0",
        total.as_bytes(),
    ]
    .concat()
}

/// When a day's hash may go.
fn expiry_ms(day: u64) -> i64 {
    ((day + 1 + MODEL_DAYS_KEPT) * 24 * 3600 * 1000) as i64
}

impl RedisStore {
    pub(super) fn add_model_day_totals(&self, d: &ModelDay) -> Result<(), StoreError> {
        let k = day_key(d.day);
        let f = |total| field(&d.model, &d.tenant, total);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HINCRBYFLOAT")
            .arg(&k)
            .arg(f("usd"))
            .arg(d.usd)
            .ignore();
        for (total, n) in [
            ("turns", d.turns),
            ("in", d.input_tokens),
            ("out", d.output_tokens),
            ("cached", d.cached_input_tokens),
        ] {
            pipe.hincr(&k, f(total), n).ignore();
        }
        pipe.pexpire_at(&k, expiry_ms(d.day)).ignore();
        self.call(move |s| async move {
            let mut c = s.link.conn();
            within(s.link.timeout(), pipe.query_async::<()>(&mut c)).await
        })
    }

    pub(super) fn model_day_totals(&self, from: u64, to: u64) -> Result<Vec<ModelDay>, StoreError> {
        let from = from.max(to.saturating_sub(MAX_DAYS - 1));
        let mut pipe = redis::pipe();
        for day in from..=to {
            pipe.hgetall(day_key(day));
        }
        let hashes: Vec<Vec<(Vec<u8>, String)>> = self.call(move |s| async move {
            let mut c = s.link.conn();
            within(s.link.timeout(), pipe.query_async(&mut c)).await
        })?;
        let mut found = Vec::new();
        for (day, hash) in (from..=to).zip(hashes) {
            // By model and tenant, as sled lists them.
            let mut days: BTreeMap<(String, String), ModelDay> = BTreeMap::new();
            for (f, v) in hash {
                let mut parts = f.splitn(3, |&b| b == 0);
                let (Some(model), Some(tenant), Some(total)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                let (model, tenant) = (
                    String::from_utf8_lossy(model).into_owned(),
                    String::from_utf8_lossy(tenant).into_owned(),
                );
                let d = days
                    .entry((model.clone(), tenant.clone()))
                    .or_insert_with(|| ModelDay {
                        day,
                        model,
                        tenant,
                        ..ModelDay::default()
                    });
                let n = || v.parse::<u64>().unwrap_or(0);
                match total {
                    b"usd" => d.usd = v.parse().unwrap_or(0.0),
                    b"turns" => d.turns = n(),
                    b"in" => d.input_tokens = n(),
                    b"out" => d.output_tokens = n(),
                    b"cached" => d.cached_input_tokens = n(),
                    _ => {}
                }
            }
            found.extend(days.into_values());
        }
        Ok(found)
    }
}
