//! Spend and turns per tenant per UTC day: kept in memory for `Route`'s
//! check (no store read per request) and written through to the session
//! store once per report batch, so a restart keeps the day's total. On a
//! store shared by replicas the store holds the totals: each report adds
//! to them atomically and each check reads them.

use std::{collections::HashMap, sync::Mutex};

use serde::{Deserialize, Serialize};

use crate::store::{SessionStore, StoreError};

const DAY_MS: u64 = 24 * 3600 * 1000;

/// The UTC day number of a Unix time in ms.
pub fn utc_day(unix_ms: u64) -> u64 {
    unix_ms / DAY_MS
}

/// One tenant's totals for one day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TenantDay {
    pub day: u64,
    pub usd: f64,
    pub turns: u64,
}

/// Today's totals per tenant.
#[derive(Default)]
pub struct TenantSpend {
    days: Mutex<HashMap<String, TenantDay>>,
}

impl TenantSpend {
    /// The tenant's totals on `day`, loaded from the store on first use.
    pub fn today(
        &self,
        store: &dyn SessionStore,
        tenant: &str,
        day: u64,
    ) -> Result<TenantDay, StoreError> {
        if store.shared() {
            // Other replicas add to it too: the store is the truth.
            return Ok(store.tenant_day(tenant, day)?.unwrap_or(TenantDay {
                day,
                ..TenantDay::default()
            }));
        }
        {
            let days = self.days.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(d) = days.get(tenant) {
                return Ok(if d.day == day {
                    *d
                } else {
                    TenantDay {
                        day,
                        ..TenantDay::default()
                    }
                });
            }
        }
        let loaded = store.tenant_day(tenant, day)?.unwrap_or(TenantDay {
            day,
            ..TenantDay::default()
        });
        let mut days = self.days.lock().unwrap_or_else(|e| e.into_inner());
        // A report may have raced the load: keep whichever is further along.
        let entry = days.entry(tenant.to_owned()).or_insert(loaded);
        if entry.day < day || (entry.day == day && entry.usd < loaded.usd) {
            *entry = loaded;
        }
        Ok(*entry)
    }

    /// Adds a reported turn's cost (and the turn) to the tenant's day in
    /// memory only: a batch of reports writes each tenant once, with
    /// [`TenantSpend::persist`].
    pub fn add_unpersisted(
        &self,
        store: &dyn SessionStore,
        tenant: &str,
        day: u64,
        usd: f64,
        turns: u64,
    ) -> Result<TenantDay, StoreError> {
        if store.shared() {
            // One atomic increment in the store, so replicas add up.
            return store.add_tenant_day(tenant, day, usd, turns);
        }
        let mut current = self.today(store, tenant, day)?;
        {
            let mut days = self.days.lock().unwrap_or_else(|e| e.into_inner());
            let entry = days.entry(tenant.to_owned()).or_insert(current);
            if entry.day != day {
                *entry = TenantDay {
                    day,
                    ..TenantDay::default()
                };
            }
            entry.usd += usd;
            entry.turns += turns;
            current = *entry;
        }
        Ok(current)
    }

    /// Adds a reported turn's cost (and the turn) to the tenant's day and
    /// writes the day through to the store.
    pub fn add(
        &self,
        store: &dyn SessionStore,
        tenant: &str,
        day: u64,
        usd: f64,
        turns: u64,
    ) -> Result<TenantDay, StoreError> {
        let current = self.add_unpersisted(store, tenant, day, usd, turns)?;
        if !store.shared() {
            store.put_tenant_day(tenant, &current)?;
        }
        Ok(current)
    }

    /// Writes the tenant's current day to the store.
    pub fn persist(&self, store: &dyn SessionStore, tenant: &str) -> Result<(), StoreError> {
        if store.shared() {
            // Added in the store already.
            return Ok(());
        }
        let current = {
            let days = self.days.lock().unwrap_or_else(|e| e.into_inner());
            days.get(tenant).copied()
        };
        match current {
            Some(day) => store.put_tenant_day(tenant, &day),
            None => Ok(()),
        }
    }
}
