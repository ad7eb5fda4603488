//! Tenant spend and turns per UTC day: tree `tenant_days`, keyed by tenant,
//! NUL, the day (8 bytes big endian). Written behind with the sessions (one
//! write per tenant per pass), read back from memory until written.

use std::{
    collections::HashMap,
    sync::{
        Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use super::StoreError;
use crate::budget::{TenantDay, utc_day};

/// The tree and the days not yet written to it.
pub(super) struct TenantDays {
    tree: sled::Tree,
    /// Days not yet written, by store key.
    pending: Mutex<HashMap<Vec<u8>, TenantDay>>,
    /// The UTC day old days were last aged out on.
    aged: AtomicU64,
}

impl TenantDays {
    pub fn open(db: &sled::Db) -> Result<Self, StoreError> {
        Ok(Self {
            tree: db.open_tree("tenant_days")?,
            pending: Mutex::default(),
            aged: AtomicU64::new(0),
        })
    }

    pub fn get(&self, tenant: &str, day: u64) -> Result<Option<TenantDay>, StoreError> {
        let k = key(tenant, day);
        let pending = self.pending();
        if let Some(d) = pending.get(&k) {
            return Ok(Some(*d));
        }
        self.tree
            .get(k)?
            .map(|v| Ok(serde_json::from_slice(&v)?))
            .transpose()
    }

    /// Keeps `day` for the next write pass.
    pub fn put(&self, tenant: &str, day: &TenantDay) {
        self.pending().insert(key(tenant, day.day), *day);
    }

    /// Writes the pending days; returns how many. The lock is held while
    /// writing so a read never falls between the map and sled.
    pub fn write_pass(&self) -> Result<usize, StoreError> {
        let mut pending = self.pending();
        for (k, day) in pending.iter() {
            self.tree.insert(k.as_slice(), serde_json::to_vec(day)?)?;
        }
        let n = pending.len();
        pending.clear();
        Ok(n)
    }

    /// On the first call of a UTC day, drops the days more than `kept`
    /// before it (a scan of the small tree: tenants times kept days);
    /// returns how many.
    pub fn age_out(&self, now_ms: u64, kept: u64) -> Result<usize, StoreError> {
        let today = utc_day(now_ms);
        if self.aged.load(Ordering::Relaxed) == today {
            return Ok(0);
        }
        let oldest_kept = today.saturating_sub(kept);
        let mut dropped = 0;
        for k in self.tree.iter().keys() {
            let k = k?;
            let day = k
                .len()
                .checked_sub(8)
                .and_then(|at| k[at..].try_into().ok())
                .map(u64::from_be_bytes);
            if day.is_some_and(|day| day < oldest_kept) {
                self.tree.remove(&k)?;
                dropped += 1;
            }
        }
        self.aged.store(today, Ordering::Relaxed);
        Ok(dropped)
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<Vec<u8>, TenantDay>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn key(tenant: &str, day: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(tenant.len() + 9);
    k.extend_from_slice(tenant.as_bytes());
    k.push(0);
    k.extend_from_slice(&day.to_be_bytes());
    k
}
