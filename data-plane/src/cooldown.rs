//! Keys a provider rate limited, until its `Retry-After` passes. A 429 is
//! about a key: the next request prefers another key instead of hitting the
//! same wall.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Cool-down used when a 429 carries no `Retry-After`.
const DEFAULT_COOLDOWN: Duration = Duration::from_secs(1);
/// Longest cool-down honoured, so a bogus header cannot park a key for hours.
const MAX_COOLDOWN: Duration = Duration::from_secs(300);

/// How long a key the provider rejected (401/403) is left alone: long
/// enough not to fail every request on it, short enough that a fixed key
/// comes back without a restart.
pub const REJECTED_KEY_PARK: Duration = MAX_COOLDOWN;

/// Rate-limited or rejected key references and when they may be used again.
#[derive(Default)]
pub struct Cooldowns {
    until: Mutex<HashMap<String, Instant>>,
}

impl Cooldowns {
    /// Parks `key_ref` for `retry_after` seconds (or the default).
    pub fn rate_limited(&self, key_ref: &str, retry_after: Option<u64>) {
        let wait = retry_after
            .map_or(DEFAULT_COOLDOWN, Duration::from_secs)
            .min(MAX_COOLDOWN);
        let mut map = self.until.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        map.retain(|_, t| *t > now);
        map.insert(key_ref.to_owned(), now + wait);
    }

    /// Parks `key_ref`, which the provider rejected, for
    /// [`REJECTED_KEY_PARK`].
    pub fn rejected(&self, key_ref: &str) {
        self.rate_limited(key_ref, Some(REJECTED_KEY_PARK.as_secs()));
    }

    /// Seconds until `key_ref` may be used again, if it is cooling down.
    pub fn remaining(&self, key_ref: &str) -> Option<Duration> {
        let map = self.until.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key_ref)
            .and_then(|t| t.checked_duration_since(Instant::now()))
            .filter(|d| !d.is_zero())
    }
}

#[cfg(test)]
mod tests {
    use super::Cooldowns;

    #[test]
    fn a_rate_limited_key_cools_down_for_its_retry_after() {
        let c = Cooldowns::default();
        assert!(c.remaining("k").is_none());
        c.rate_limited("k", Some(30));
        let left = c.remaining("k").unwrap();
        assert!(left.as_secs() >= 29 && left.as_secs() <= 30);
        c.rate_limited("j", Some(0));
        assert!(c.remaining("j").is_none(), "0 s means usable again");
        c.rate_limited("x", Some(1_000_000));
        assert!(c.remaining("x").unwrap().as_secs() <= 300, "capped");
    }
}
