//! Replays the labelled sets through the real sidecar fingerprinting (its shared cache,
//! the protobuf form sent to the control plane) and the real session codec, turn by turn,
//! and prints recall, early alarms, false positives and delay per set, per action format
//! and per source. Exits 1 when a set or an action format misses the targets (recall,
//! no false positive on a healthy conversation, median delay), so CI can run it:
//! `scripts/test-divergence.sh`.

mod corpus;
mod replay;
mod score;

use clap::Parser;
use keel::fingerprint::{self, FingerprintCache};
use keel_control_plane::divergence::DivergenceConfig;
use serde::Deserialize;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use corpus::Case;
use score::{Figures, Scored, Targets};

#[derive(Parser)]
#[command(about = "Evaluate divergence (loop) detection on the labelled sets")]
struct Args {
    /// Directory of the generated corpus (`*.jsonl`).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../control-plane/corpus/divergence"))]
    corpus: PathBuf,
    /// The development set of real agent conversations (not ours to ship: it
    /// is read from the `shared/` folder beside the checkout, as CI lays it).
    #[arg(
        long,
        env = "KEEL_DIVERGENCE_DEV",
        default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/divergence-dev/conversations.jsonl")
    )]
    dev: PathBuf,
    /// Tail window the sidecar fingerprints per turn.
    #[arg(long, default_value_t = fingerprint::DEFAULT_WINDOW)]
    window: usize,
    /// A control-plane config file (TOML); only its `[divergence]` table is read.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Minimum recall per set and per action format.
    #[arg(long, default_value_t = 0.9)]
    min_recall: f64,
    /// Maximum median delay (assistant turns) per set and per action format.
    #[arg(long, default_value_t = 2)]
    max_median_delay: usize,
    /// Write the development set's first alarms here, in `score.py`'s input format.
    #[arg(long)]
    alarms: Option<PathBuf>,
    /// Print one line per conversation.
    #[arg(long)]
    verbose: bool,
    /// Print the detector's view of every step of the conversations whose id contains
    /// this, at every request.
    #[arg(long)]
    trace: Option<String>,
}

#[derive(Debug, thiserror::Error)]
enum EvalError {
    #[error(transparent)]
    Load(#[from] corpus::LoadError),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0}: {1}")]
    Toml(String, toml::de::Error),
    #[error("{0}")]
    Config(String),
}

fn main() {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("eval: {e}");
            std::process::exit(2);
        }
    }
}

fn run(args: &Args) -> Result<bool, EvalError> {
    let cfg = load_config(args.config.as_deref())?;
    let cache = FingerprintCache::default();
    let targets = Targets {
        min_recall: args.min_recall,
        max_median_delay: args.max_median_delay,
    };
    let mut sets = vec![("generated", corpus::load_generated(&args.corpus)?, true)];
    if args.dev.exists() {
        sets.push(("dev", corpus::load_dev(&args.dev)?, false));
    } else {
        eprintln!(
            "eval: NO DEVELOPMENT SET at {}: only the generated corpus is replayed (pass --dev or KEEL_DIVERGENCE_DEV)",
            args.dev.display()
        );
    }
    let mut ok = true;
    for (name, cases, trailing) in &sets {
        let (rows, stats) = evaluate(&cache, cases, *trailing, args, &cfg);
        if *name == "dev"
            && let Some(path) = &args.alarms
        {
            write_alarms(path, cases, &rows)?;
        }
        ok &= report(name, &rows, &stats, &targets);
    }
    Ok(ok)
}

/// Replay statistics of a set.
struct Stats {
    requests: usize,
    max_record: usize,
}

fn evaluate(
    cache: &FingerprintCache,
    cases: &[Case],
    trailing: bool,
    args: &Args,
    cfg: &DivergenceConfig,
) -> (Vec<Scored>, Stats) {
    let mut stats = Stats {
        requests: 0,
        max_record: 0,
    };
    let mut rows = Vec::with_capacity(cases.len());
    for c in cases {
        let points = replay::request_points(&c.messages, trailing);
        let trace = args.trace.as_deref().is_some_and(|t| c.id.contains(t));
        if trace {
            println!("{}", c.id);
        }
        let r = replay::replay(cache, c.wire, &c.messages, &points, args.window, cfg, trace);
        stats.requests += r.requests;
        stats.max_record = stats.max_record.max(r.max_record);
        let alarm = r.first.as_ref().map(|(t, _)| *t);
        let row = Scored::new(c, &points, alarm, r.nudges);
        if args.verbose {
            let label = match c.loop_start {
                Some(s) => format!("loop@{s}"),
                None if c.hard_negative => "healthy (hard)".into(),
                None => "healthy".into(),
            };
            let got = match &r.first {
                Some((t, n)) => format!("{} at {t} turns {:?}", n.pattern, n.turns),
                None => "-".into(),
            };
            let verdict = match (row.looping, row.delay, row.early, alarm) {
                (true, Some(d), _, _) => format!("hit +{d}"),
                (true, _, true, _) => "EARLY".into(),
                (true, _, _, _) => "MISS".into(),
                (false, _, _, Some(_)) => "FALSE POSITIVE".into(),
                (false, _, _, None) => "ok".into(),
            };
            let expect = c.pattern.as_deref().unwrap_or("");
            println!(
                "{:<58} {:<15} {:<16} {expect:<17} -> {got}",
                c.id, label, verdict
            );
        }
        rows.push(row);
    }
    (rows, stats)
}

/// Prints a set's figures (all, per action format, per source) and checks the targets
/// on the set and on each action format.
fn report(name: &str, rows: &[Scored], stats: &Stats, targets: &Targets) -> bool {
    println!(
        "\n== {name}: {} conversations, {} requests replayed, largest session record {} bytes",
        rows.len(),
        stats.requests,
        stats.max_record
    );
    let all = Figures::of(rows);
    println!("  {}", all.line("all"));
    let mut failures: Vec<String> = targets
        .failures(&all)
        .into_iter()
        .map(|f| format!("{name}: {f}"))
        .collect();
    println!("  by action format:");
    for (fmt, g) in score::groups(rows, |r| r.action_format.to_owned()) {
        let f = Figures::of(g);
        println!("    {}", f.line(&fmt));
        failures.extend(
            targets
                .failures(&f)
                .into_iter()
                .map(|e| format!("{name}/{fmt}: {e}")),
        );
    }
    println!("  by source:");
    for (src, g) in score::groups(rows, |r| r.source.clone()) {
        println!("    {}", Figures::of(g).line(&src));
    }
    let repeat = |looping: bool| {
        let of: Vec<&Scored> = rows.iter().filter(|r| r.looping == looping).collect();
        let n = of.iter().filter(|r| r.nudges >= 2).count();
        format!("{n}/{}", of.len())
    };
    println!(
        "  nudged twice or more (escalation would apply): healthy {}, looping {}",
        repeat(false),
        repeat(true)
    );
    for f in &failures {
        println!("  FAILED {f}");
    }
    failures.is_empty()
}

fn write_alarms(path: &Path, cases: &[Case], rows: &[Scored]) -> Result<(), EvalError> {
    let io = |e| EvalError::Io(path.display().to_string(), e);
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
    for (c, r) in cases.iter().zip(rows) {
        let line = serde_json::json!({"id": c.id, "alarm_at": r.alarm});
        writeln!(f, "{line}").map_err(io)?;
    }
    f.flush().map_err(io)
}

fn load_config(path: Option<&Path>) -> Result<DivergenceConfig, EvalError> {
    let cfg = match path {
        None => DivergenceConfig::default(),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| EvalError::Io(p.display().to_string(), e))?;
            #[derive(Deserialize)]
            struct File {
                #[serde(default)]
                divergence: DivergenceConfig,
            }
            let file: File =
                toml::from_str(&text).map_err(|e| EvalError::Toml(p.display().to_string(), e))?;
            file.divergence
        }
    };
    cfg.validate()
        .map_err(|e| EvalError::Config(e.to_string()))?;
    Ok(cfg)
}
