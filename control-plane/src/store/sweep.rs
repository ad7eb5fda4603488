//! The sweep: a bounded scan of `sessions` from a cursor, so each run costs
//! the same whatever the store holds and no index tree is kept (sled's
//! memory grows with its number of keys). A run looks at up to
//! [`SWEEP_BATCH`] sessions after the one the previous run stopped at, and
//! wraps at the end; a full pass takes `stored / SWEEP_BATCH` runs. The run
//! itself (what goes with a removed session) is `SledStore`'s, across its
//! parts (sled_store.rs).

use std::sync::{Mutex, PoisonError};

use super::{StoreError, sessions::Sessions};

/// Sessions looked at per run.
pub const SWEEP_BATCH: usize = 4096;

/// Days a tenant's daily totals are kept after their day. `Route` and
/// `GetBudgets` read only today's; the rest is a month of history.
pub const TENANT_DAYS_KEPT: u64 = 31;

/// Where the next run starts.
#[derive(Default)]
pub(super) struct Cursor(Mutex<Vec<u8>>);

impl Cursor {
    /// Keys of idle-looking sessions among the next `most` from the
    /// cursor; moves the cursor past them (to the start after the last).
    pub fn next_batch(
        &self,
        sessions: &Sessions,
        now_ms: u64,
        most: usize,
    ) -> Result<Vec<sled::IVec>, StoreError> {
        let mut cursor = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let scan = sessions.scan_idle(&cursor, now_ms, most)?;
        *cursor = scan.resume;
        Ok(scan.idle)
    }
}
