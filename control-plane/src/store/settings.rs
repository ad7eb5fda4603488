//! Run-time settings: tree `meta`, today the budget caps set by
//! `Admin.SetBudgets` (written at once, durable with the next flush).

use super::StoreError;
use crate::budget::Overrides;

/// Key of the run-time budget caps.
const BUDGETS_KEY: &[u8] = b"budget_overrides";

pub(super) struct Settings {
    tree: sled::Tree,
}

impl Settings {
    pub fn open(db: &sled::Db) -> Result<Self, StoreError> {
        Ok(Self {
            tree: db.open_tree("meta")?,
        })
    }

    pub fn budget_overrides(&self) -> Result<Option<Overrides>, StoreError> {
        self.tree
            .get(BUDGETS_KEY)?
            .map(|v| Ok(serde_json::from_slice(&v)?))
            .transpose()
    }

    pub fn put_budget_overrides(&self, overrides: &Overrides) -> Result<(), StoreError> {
        self.tree
            .insert(BUDGETS_KEY, serde_json::to_vec(overrides)?)?;
        Ok(())
    }
}
