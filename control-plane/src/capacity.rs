//! Load per provider key: requests in flight (counted by `Route`, released
//! by `Report`, expired when a report never comes), rate-limit headroom from
//! the configured `rpm` / `tpm` and the provider's own `x-ratelimit-*` /
//! `anthropic-ratelimit-*` headers, and 429s seen. From these, a key's
//! [`Pressure`], which decides what is shed (see `[load]` in the README).

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::catalog::Catalog;

/// Cool-down of a rate-limited key without `Retry-After`, and the longest
/// honoured.
const DEFAULT_COOLDOWN: Duration = Duration::from_secs(1);
const MAX_COOLDOWN: Duration = Duration::from_secs(300);

/// Most in-flight entries kept per key; past it the oldest is presumed lost.
const MAX_TRACKED: usize = 4096;
/// Rate windows are one minute, as providers count `rpm` / `tpm`.
const WINDOW: Duration = Duration::from_secs(60);

/// `[load]`: when a key is under pressure.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// In-flight requests at which a key is full (0: no limit); a key's own
    /// `max_in_flight` wins.
    pub max_in_flight_per_key: u32,
    /// Headroom below which a key is full.
    pub min_headroom: f64,
    /// Share of capacity kept from shed-first profiles: such a profile sees
    /// a key as busy once its load passes `1 - reserve`.
    pub reserve: f64,
    /// `Retry-After` for a shed request.
    pub retry_after: Duration,
    /// An in-flight request without a report stops counting after this.
    pub in_flight_timeout: Duration,
}

impl Default for LoadConfig {
    fn default() -> Self {
        Self {
            max_in_flight_per_key: 0,
            min_headroom: 0.05,
            reserve: 0.2,
            retry_after: Duration::from_secs(2),
            in_flight_timeout: Duration::from_secs(600),
        }
    }
}

/// How loaded a key is, as far as shedding goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pressure {
    /// Room for everyone.
    Free,
    /// Within the reserve of full: profiles with shed priority 2 keep off.
    Busy,
    /// At its in-flight limit or out of headroom: only shed priority 0.
    Full,
}

impl Pressure {
    /// Whether a profile with `shed_priority` may still use the key.
    pub fn admits(self, shed_priority: u8) -> bool {
        match shed_priority {
            0 => true,
            1 => self != Self::Full,
            _ => self == Self::Free,
        }
    }
}

/// A one-minute counter that also remembers the previous minute, for a
/// sliding estimate of the last 60 s.
#[derive(Debug, Default, Clone, Copy)]
struct Window {
    minute: u64,
    this: u64,
    prev: u64,
}

impl Window {
    fn roll(&mut self, minute: u64) {
        if minute != self.minute {
            self.prev = if minute == self.minute + 1 {
                self.this
            } else {
                0
            };
            self.this = 0;
            self.minute = minute;
        }
    }

    fn add(&mut self, minute: u64, n: u64) {
        self.roll(minute);
        self.this += n;
    }

    /// Estimated count over the last minute: this minute plus the part of
    /// the previous one still inside the window.
    fn estimate(&self, minute: u64, into_minute: f64) -> f64 {
        match minute.checked_sub(self.minute) {
            Some(0) => self.this as f64 + self.prev as f64 * (1.0 - into_minute),
            Some(1) => self.this as f64 * (1.0 - into_minute),
            _ => 0.0,
        }
    }
}

#[derive(Debug, Default)]
struct KeyLoad {
    /// Start times of requests in flight, oldest first.
    in_flight: VecDeque<Instant>,
    requests: Window,
    tokens: Window,
    /// Lowest remaining/limit share the provider last reported, and when.
    reported: Option<(f64, Instant)>,
    rate_limited: u64,
    /// A 429 parked the key until then (its `Retry-After`).
    parked_until: Option<Instant>,
}

/// A key's limits from the catalog.
#[derive(Debug, Clone, Copy)]
struct Limits {
    rpm: Option<u32>,
    tpm: Option<u32>,
    max_in_flight: u32,
}

/// What one key looks like now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KeySnapshot {
    pub in_flight: u32,
    /// 0 (exhausted) ..= 1 (idle); `None` when nothing limits the key.
    pub headroom: Option<f64>,
    pub pressure: Pressure,
    pub rate_limited: u64,
}

impl KeySnapshot {
    /// Load in 0..=1 (1 = full), for spreading: the larger of in-flight
    /// share and used headroom.
    pub fn load(&self, max_in_flight: u32) -> f64 {
        let by_flight = if max_in_flight > 0 {
            f64::from(self.in_flight) / f64::from(max_in_flight)
        } else {
            0.0
        };
        by_flight.max(1.0 - self.headroom.unwrap_or(1.0)).min(1.0)
    }
}

/// Load of every key of the catalog, `[provider][key]`.
pub struct Capacity {
    keys: Vec<Vec<Mutex<KeyLoad>>>,
    limits: Vec<Vec<Limits>>,
    config: LoadConfig,
    epoch: Instant,
}

impl Capacity {
    pub fn new(catalog: &Catalog, config: LoadConfig) -> Self {
        Self {
            keys: catalog
                .providers()
                .iter()
                .map(|p| p.keys.iter().map(|_| Mutex::default()).collect())
                .collect(),
            limits: catalog
                .providers()
                .iter()
                .map(|p| {
                    p.keys
                        .iter()
                        .map(|k| Limits {
                            rpm: k.rpm,
                            tpm: k.tpm,
                            max_in_flight: k.max_in_flight.unwrap_or(config.max_in_flight_per_key),
                        })
                        .collect()
                })
                .collect(),
            config,
            epoch: Instant::now(),
        }
    }

    pub fn config(&self) -> &LoadConfig {
        &self.config
    }

    fn slot(&self, p: usize, k: usize) -> Option<std::sync::MutexGuard<'_, KeyLoad>> {
        self.keys
            .get(p)?
            .get(k)
            .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn minute(&self, now: Instant) -> (u64, f64) {
        let secs = now.duration_since(self.epoch).as_secs_f64();
        let w = WINDOW.as_secs_f64();
        ((secs / w) as u64, (secs % w) / w)
    }

    /// The in-flight limit of a key (0: none).
    pub fn max_in_flight(&self, p: usize, k: usize) -> u32 {
        self.limits
            .get(p)
            .and_then(|l| l.get(k))
            .map_or(0, |l| l.max_in_flight)
    }

    /// `Route` sent a request to the key.
    pub fn started(&self, p: usize, k: usize, now: Instant) {
        let (minute, _) = self.minute(now);
        let Some(mut s) = self.slot(p, k) else { return };
        if s.in_flight.len() >= MAX_TRACKED {
            s.in_flight.pop_front();
        }
        s.in_flight.push_back(now);
        s.requests.add(minute, 1);
    }

    /// A report for a request routed to the key arrived. Releases the
    /// oldest entry: which one finished is unknown, and the oldest is the
    /// one that would expire first anyway.
    pub fn finished(&self, p: usize, k: usize) {
        if let Some(mut s) = self.slot(p, k) {
            s.in_flight.pop_front();
        }
    }

    /// What an attempt on the key reported: tokens used, the provider's
    /// rate-limit headers, and whether it was a 429.
    pub fn observe(
        &self,
        p: usize,
        k: usize,
        tokens: u64,
        headers: &HashMap<String, String>,
        rate_limited: bool,
        now: Instant,
    ) {
        let (minute, _) = self.minute(now);
        let (rpm, tpm) = self
            .limits
            .get(p)
            .and_then(|l| l.get(k))
            .map_or((None, None), |l| (l.rpm, l.tpm));
        let reported = reported_share(headers, rpm, tpm);
        let Some(mut s) = self.slot(p, k) else { return };
        if tokens > 0 {
            s.tokens.add(minute, tokens);
        }
        if let Some(share) = reported {
            s.reported = Some((share, now));
        }
        if rate_limited {
            s.rate_limited += 1;
        }
    }

    /// A 429 parks the key for `retry_after_secs` (1 s without one, at most
    /// 5 min so a bogus header cannot park it for hours).
    /// Returns how long.
    pub fn park(
        &self,
        p: usize,
        k: usize,
        retry_after_secs: Option<u64>,
        now: Instant,
    ) -> Duration {
        let wait = retry_after_secs
            .map_or(DEFAULT_COOLDOWN, Duration::from_secs)
            .min(MAX_COOLDOWN);
        if let Some(mut s) = self.slot(p, k) {
            s.parked_until = Some(now + wait);
        }
        wait
    }

    /// Parks the key until `until` unless it is parked longer already (a
    /// 429 another replica saw, shared through the store).
    pub fn park_until(&self, p: usize, k: usize, until: Instant) {
        if let Some(mut s) = self.slot(p, k)
            && s.parked_until.is_none_or(|t| t < until)
        {
            s.parked_until = Some(until.min(Instant::now() + MAX_COOLDOWN));
        }
    }

    /// Whether key `k` of provider `p` is parked by a recent 429.
    pub fn parked(&self, p: usize, k: usize) -> bool {
        self.slot(p, k)
            .and_then(|s| s.parked_until)
            .is_some_and(|until| until > Instant::now())
    }

    /// How much longer a 429 keeps the key parked, if it does.
    pub fn parked_for(&self, p: usize, k: usize, now: Instant) -> Option<Duration> {
        self.slot(p, k)?
            .parked_until
            .and_then(|until| until.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    /// The key now.
    pub fn snapshot(&self, p: usize, k: usize, now: Instant) -> KeySnapshot {
        let (minute, into) = self.minute(now);
        let limits = self
            .limits
            .get(p)
            .and_then(|l| l.get(k))
            .copied()
            .unwrap_or(Limits {
                rpm: None,
                tpm: None,
                max_in_flight: 0,
            });
        let Some(mut s) = self.slot(p, k) else {
            return KeySnapshot {
                in_flight: 0,
                headroom: None,
                pressure: Pressure::Free,
                rate_limited: 0,
            };
        };
        // Self-healing: a request whose report was lost stops counting.
        while s
            .in_flight
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.config.in_flight_timeout)
        {
            s.in_flight.pop_front();
        }
        let in_flight = u32::try_from(s.in_flight.len()).unwrap_or(u32::MAX);
        let mut headroom: Option<f64> = None;
        let mut lower = |h: f64| headroom = Some(headroom.map_or(h, |o: f64| o.min(h)));
        if let Some(rpm) = limits.rpm {
            lower(1.0 - s.requests.estimate(minute, into) / f64::from(rpm));
        }
        if let Some(tpm) = limits.tpm {
            lower(1.0 - s.tokens.estimate(minute, into) / f64::from(tpm));
        }
        if let Some((share, at)) = s.reported
            && now.duration_since(at) < WINDOW
        {
            lower(share);
        }
        let headroom = headroom.map(|h| h.clamp(0.0, 1.0));
        KeySnapshot {
            in_flight,
            headroom,
            pressure: pressure(&self.config, limits.max_in_flight, in_flight, headroom),
            rate_limited: s.rate_limited,
        }
    }
}

/// Full at the in-flight limit or below the minimum headroom; busy within
/// the reserve of either.
fn pressure(c: &LoadConfig, max_in_flight: u32, in_flight: u32, headroom: Option<f64>) -> Pressure {
    let h = headroom.unwrap_or(1.0);
    if (max_in_flight > 0 && in_flight >= max_in_flight) || h < c.min_headroom {
        return Pressure::Full;
    }
    let busy_at = (f64::from(max_in_flight) * (1.0 - c.reserve))
        .ceil()
        .max(1.0);
    if (max_in_flight > 0 && f64::from(in_flight) >= busy_at) || h < c.min_headroom + c.reserve {
        return Pressure::Busy;
    }
    Pressure::Free
}

/// The lowest remaining/limit share among the rate-limit headers a
/// provider sent. A limit header missing falls back to the configured
/// `rpm` / `tpm`; a remaining of 0 counts even without any limit.
pub fn reported_share(
    headers: &HashMap<String, String>,
    rpm: Option<u32>,
    tpm: Option<u32>,
) -> Option<f64> {
    const PAIRS: [(&str, &str, bool); 5] = [
        (
            "x-ratelimit-remaining-requests",
            "x-ratelimit-limit-requests",
            true,
        ),
        (
            "x-ratelimit-remaining-tokens",
            "x-ratelimit-limit-tokens",
            false,
        ),
        (
            "anthropic-ratelimit-requests-remaining",
            "anthropic-ratelimit-requests-limit",
            true,
        ),
        (
            "anthropic-ratelimit-tokens-remaining",
            "anthropic-ratelimit-tokens-limit",
            false,
        ),
        (
            "anthropic-ratelimit-input-tokens-remaining",
            "anthropic-ratelimit-input-tokens-limit",
            false,
        ),
    ];
    if headers.is_empty() {
        return None;
    }
    let num = |name: &str| headers.get(name).and_then(|v| v.trim().parse::<f64>().ok());
    let mut share: Option<f64> = None;
    for (remaining, limit, requests) in PAIRS {
        let Some(r) = num(remaining) else { continue };
        let configured = if requests { rpm } else { tpm };
        let l = num(limit).or(configured.map(f64::from));
        let s = match l {
            Some(l) if l > 0.0 => (r / l).clamp(0.0, 1.0),
            _ if r <= 0.0 => 0.0,
            _ => continue,
        };
        share = Some(share.map_or(s, |o| o.min(s)));
    }
    share
}

#[cfg(test)]
mod tests;
