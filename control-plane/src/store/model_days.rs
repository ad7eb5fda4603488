//! Spend, turns and tokens per model per UTC day (and per tenant within
//! the model), for the console's spend page: tree `model_days`, keyed by
//! the day (8 bytes, big-endian, so a range of days is a range of keys),
//! the model, NUL, the tenant.
//!
//! Reports add to pending totals in memory; the store's write pass adds
//! them to sled (written behind like the sessions, so a report costs no
//! sled write). Reads merge the pending totals. Days older than
//! [`MODEL_DAYS_KEPT`] go on the first write of a UTC day.

use std::{
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::budget::utc_day;

/// Days kept before today.
pub const MODEL_DAYS_KEPT: u64 = 31;

/// One model's totals for one tenant on one UTC day; also what one report
/// adds to them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelDay {
    pub day: u64,
    /// Catalog model name.
    pub model: String,
    pub tenant: String,
    pub usd: f64,
    /// Requests served (or cut short with a cost).
    pub turns: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
}

impl ModelDay {
    /// Adds `other`'s totals (not its names) to these.
    pub fn add(&mut self, other: &ModelDay) {
        self.usd += other.usd;
        self.turns += other.turns;
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cached_input_tokens += other.cached_input_tokens;
    }
}

/// The stored form of a [`ModelDay`]'s totals.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Totals {
    usd: f64,
    turns: u64,
    #[serde(rename = "in")]
    input_tokens: u64,
    #[serde(rename = "out")]
    output_tokens: u64,
    #[serde(rename = "cached")]
    cached_input_tokens: u64,
}

impl Totals {
    fn of(d: &ModelDay) -> Self {
        Self {
            usd: d.usd,
            turns: d.turns,
            input_tokens: d.input_tokens,
            output_tokens: d.output_tokens,
            cached_input_tokens: d.cached_input_tokens,
        }
    }

    fn add(&mut self, o: &Totals) {
        self.usd += o.usd;
        self.turns += o.turns;
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.cached_input_tokens += o.cached_input_tokens;
    }
}

fn key(day: u64, model: &str, tenant: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + model.len() + 1 + tenant.len());
    k.extend_from_slice(&day.to_be_bytes());
    k.extend_from_slice(model.as_bytes());
    k.push(0);
    k.extend_from_slice(tenant.as_bytes());
    k
}

fn day_of(key: &[u8]) -> Option<u64> {
    key.first_chunk::<8>().map(|d| u64::from_be_bytes(*d))
}

/// The day model and tenant of a key, with `t`'s totals.
fn entry(key: &[u8], t: &Totals) -> Option<ModelDay> {
    let (day, rest) = key.split_first_chunk::<8>()?;
    let sep = rest.iter().position(|&b| b == 0)?;
    Some(ModelDay {
        day: u64::from_be_bytes(*day),
        model: String::from_utf8_lossy(&rest[..sep]).into_owned(),
        tenant: String::from_utf8_lossy(&rest[sep + 1..]).into_owned(),
        usd: t.usd,
        turns: t.turns,
        input_tokens: t.input_tokens,
        output_tokens: t.output_tokens,
        cached_input_tokens: t.cached_input_tokens,
    })
}

/// The `model_days` tree and the totals not yet added to it.
pub(super) struct ModelDays {
    tree: sled::Tree,
    /// Totals to add, by key.
    pending: Mutex<HashMap<Vec<u8>, Totals>>,
    /// The UTC day old days were last dropped on.
    aged: AtomicU64,
}

impl ModelDays {
    pub fn open(db: &sled::Db) -> Result<Self, StoreError> {
        Ok(Self {
            tree: db.open_tree("model_days")?,
            pending: Mutex::default(),
            aged: AtomicU64::new(0),
        })
    }

    /// Adds `d` to its model's totals of its day (for its tenant).
    pub fn add(&self, d: &ModelDay) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key(d.day, &d.model, &d.tenant))
            .or_default()
            .add(&Totals::of(d));
    }

    /// Every model's totals per tenant on the days `from..=to`, by day,
    /// model and tenant.
    pub fn range(&self, from: u64, to: u64) -> Result<Vec<ModelDay>, StoreError> {
        // Under the lock, so a write pass never hides a total in between.
        let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let mut found: std::collections::BTreeMap<Vec<u8>, Totals> = Default::default();
        let (lo, hi) = (from.to_be_bytes(), to.saturating_add(1).to_be_bytes());
        for kv in self.tree.range(lo.as_slice()..hi.as_slice()) {
            let (k, v) = kv?;
            found.insert(k.to_vec(), serde_json::from_slice(&v)?);
        }
        for (k, t) in pending.iter() {
            if day_of(k).is_some_and(|d| (from..=to).contains(&d)) {
                found.entry(k.clone()).or_default().add(t);
            }
        }
        Ok(found.iter().filter_map(|(k, t)| entry(k, t)).collect())
    }

    /// Adds the pending totals to sled (and, once a UTC day, drops the
    /// days past [`MODEL_DAYS_KEPT`]); how many keys it wrote.
    pub fn write(&self, now_ms: u64) -> Result<usize, StoreError> {
        self.age_out(utc_day(now_ms))?;
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for (k, t) in pending.iter() {
            // One process owns the tree: read, add, write under the lock.
            let mut total: Totals = match self.tree.get(k)? {
                Some(v) => serde_json::from_slice(&v)?,
                None => Totals::default(),
            };
            total.add(t);
            self.tree
                .insert(k.as_slice(), serde_json::to_vec(&total)?)?;
        }
        let n = pending.len();
        pending.clear();
        Ok(n)
    }

    fn age_out(&self, today: u64) -> Result<(), StoreError> {
        if self.aged.swap(today, Ordering::Relaxed) == today {
            return Ok(());
        }
        let first_kept = today.saturating_sub(MODEL_DAYS_KEPT).to_be_bytes();
        for k in self.tree.range(..first_kept.as_slice()).keys() {
            self.tree.remove(k?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(day: u64, model: &str, tenant: &str, usd: f64) -> ModelDay {
        ModelDay {
            day,
            model: model.into(),
            tenant: tenant.into(),
            usd,
            turns: 1,
            input_tokens: 100,
            output_tokens: 10,
            cached_input_tokens: 40,
        }
    }

    #[test]
    fn totals_add_up_across_write_passes_and_old_days_go() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let days = ModelDays::open(&db).unwrap();
        let today = 20_000;
        days.add(&served(today, "small", "acme", 1.0));
        days.add(&served(today - MODEL_DAYS_KEPT - 1, "small", "acme", 9.0));
        days.write(today * 86_400_000).unwrap();
        days.add(&served(today, "small", "acme", 0.5));
        days.add(&served(today, "strong", "acme", 2.0));
        let found = days.range(today - 1, today).unwrap();
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].model, "small");
        assert_eq!((found[0].usd, found[0].turns), (1.5, 2));
        assert_eq!(found[0].cached_input_tokens, 80);
        assert_eq!(found[1].model, "strong");
        // Written on a later day: the old day is gone.
        days.write((today + 1) * 86_400_000).unwrap();
        assert!(days.range(0, today - 1).unwrap().is_empty());
        assert_eq!(days.range(today, today).unwrap().len(), 2);
    }
}
