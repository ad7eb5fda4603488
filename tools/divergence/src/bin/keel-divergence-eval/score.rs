//! Scores replays with the development set's protocol: a hit is a first alarm after the
//! loop start, an alarm at or before it is early (a false alarm), any alarm on a healthy
//! conversation is a false positive, and the delay of a hit is the number of request
//! points in `(start, alarm]` (1 is the earliest possible).

use std::collections::BTreeMap;

/// Outcome of one conversation.
pub struct Scored {
    pub action_format: &'static str,
    pub source: String,
    pub looping: bool,
    pub hard_negative: bool,
    pub alarm: Option<usize>,
    /// Hit delay in request points; `None` unless a hit.
    pub delay: Option<usize>,
    pub early: bool,
    /// Hit on a recovered loop at or after its end.
    pub late: bool,
    /// Nudges over the conversation (a second one without progress between escalates).
    pub nudges: usize,
}

impl Scored {
    pub fn new(
        c: &super::corpus::Case,
        points: &[usize],
        alarm: Option<usize>,
        nudges: usize,
    ) -> Scored {
        let (mut delay, mut early, mut late) = (None, false, false);
        if let (Some(start), Some(at)) = (c.loop_start, alarm) {
            if at > start {
                delay = Some(points.iter().filter(|&&p| p > start && p <= at).count());
                late = c.loop_end.is_some_and(|end| at >= end);
            } else {
                early = true;
            }
        }
        Scored {
            action_format: c.action_format,
            source: c.source.clone(),
            looping: c.loop_start.is_some(),
            hard_negative: c.hard_negative,
            alarm,
            delay,
            early,
            late,
            nudges,
        }
    }
}

/// Figures over a group of conversations.
#[derive(Default)]
pub struct Figures {
    pub loops: usize,
    pub hits: usize,
    pub early: usize,
    pub late: usize,
    pub healthy: usize,
    pub fp: usize,
    pub hard: usize,
    pub fp_hard: usize,
    pub delays: Vec<usize>,
}

impl Figures {
    pub fn of<'a>(rows: impl IntoIterator<Item = &'a Scored>) -> Figures {
        let mut f = Figures::default();
        for r in rows {
            if r.looping {
                f.loops += 1;
                f.early += usize::from(r.early);
                f.late += usize::from(r.late);
                if let Some(d) = r.delay {
                    f.hits += 1;
                    f.delays.push(d);
                }
            } else {
                let fired = usize::from(r.alarm.is_some());
                f.healthy += 1;
                f.fp += fired;
                if r.hard_negative {
                    f.hard += 1;
                    f.fp_hard += fired;
                }
            }
        }
        f.delays.sort_unstable();
        f
    }

    pub fn recall(&self) -> f64 {
        if self.loops == 0 {
            1.0
        } else {
            self.hits as f64 / self.loops as f64
        }
    }

    /// Median delay (the mean of the two middle ones for an even count, as
    /// `statistics.median` in the development set's `score.py`); `None` without hits.
    pub fn median(&self) -> Option<f64> {
        let d = &self.delays;
        let n = d.len();
        (n > 0).then(|| (d[(n - 1) / 2] + d[n / 2]) as f64 / 2.0)
    }

    fn p90(&self) -> Option<usize> {
        (!self.delays.is_empty()).then(|| {
            let i = ((self.delays.len() as f64) * 0.9).ceil() as usize;
            self.delays[i.clamp(1, self.delays.len()) - 1]
        })
    }

    pub fn line(&self, name: &str) -> String {
        let opt = |v: Option<usize>| v.map_or("-".to_owned(), |d| d.to_string());
        let med = self.median().map_or("-".to_owned(), |m| format!("{m}"));
        let hard = if self.hard > 0 {
            format!("  FP hard-neg {}/{}", self.fp_hard, self.hard)
        } else {
            String::new()
        };
        format!(
            "{name:<16} recall {:>2}/{:<2} ({:>5.1}%)  early {}  FP healthy {}/{}{hard}  median delay {}  p90 {}  late {}",
            self.hits,
            self.loops,
            100.0 * self.recall(),
            self.early,
            self.fp,
            self.healthy,
            med,
            opt(self.p90()),
            self.late,
        )
    }
}

/// Targets a group must meet.
pub struct Targets {
    pub min_recall: f64,
    pub max_median_delay: usize,
}

impl Targets {
    /// Why `f` misses the targets, if it does.
    pub fn failures(&self, f: &Figures) -> Vec<String> {
        let mut out = Vec::new();
        if f.recall() < self.min_recall {
            out.push(format!(
                "recall {:.1}% < {:.0}%",
                100.0 * f.recall(),
                100.0 * self.min_recall
            ));
        }
        if f.fp > 0 {
            out.push(format!("{} false positive(s)", f.fp));
        }
        if f.median().is_some_and(|m| m > self.max_median_delay as f64) {
            out.push(format!("median delay > {}", self.max_median_delay));
        }
        out
    }
}

/// Rows grouped by a key, in key order.
pub fn groups(rows: &[Scored], key: impl Fn(&Scored) -> String) -> BTreeMap<String, Vec<&Scored>> {
    let mut m: BTreeMap<String, Vec<&Scored>> = BTreeMap::new();
    for r in rows {
        m.entry(key(r)).or_default().push(r);
    }
    m
}
