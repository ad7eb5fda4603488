//! Outcomes already applied, by decision id, so that a batch the sidecar
//! sends again (its ack was lost: the call timed out after the control
//! plane applied it) is not counted twice. Bounded: the oldest ids are
//! forgotten first; a retry comes within seconds, long before.

use std::{
    collections::{HashSet, VecDeque},
    sync::Mutex,
};

/// Decision ids remembered.
const REMEMBERED: usize = 65_536;

#[derive(Default)]
pub(super) struct Seen {
    ids: Mutex<(HashSet<u128>, VecDeque<u128>)>,
}

impl Seen {
    /// Whether this is the first time `decision_id` is reported (and
    /// remembers it). Ids that are not UUIDs (never Keel's) are always new.
    pub(super) fn first(&self, decision_id: &str) -> bool {
        let Ok(id) = uuid::Uuid::parse_str(decision_id).map(|u| u.as_u128()) else {
            return true;
        };
        let mut guard = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        let (set, order) = &mut *guard;
        if !set.insert(id) {
            return false;
        }
        order.push_back(id);
        if order.len() > REMEMBERED
            && let Some(old) = order.pop_front()
        {
            set.remove(&old);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decision_is_applied_once_and_old_ids_are_forgotten() {
        let seen = Seen::default();
        let id = uuid::Uuid::now_v7().to_string();
        assert!(seen.first(&id));
        assert!(!seen.first(&id), "sent again: skipped");
        for _ in 0..REMEMBERED {
            seen.first(&uuid::Uuid::now_v7().to_string());
        }
        assert!(seen.first(&id), "bounded: forgotten");
        assert!(seen.first("not-a-uuid") && seen.first("not-a-uuid"));
    }
}
