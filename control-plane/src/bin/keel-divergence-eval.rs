//! Replays the labelled corpus through fingerprint + detector exactly as the gateway
//! would (one `observe` per routed request, with the tail window of the history so far)
//! and reports recall per pattern, false positives on healthy sessions and detection
//! delay. Exits 1 when any healthy conversation is nudged or recall is below
//! `--min-recall`, so CI can run it:
//! `cargo run --release -p keel-control-plane --bin keel-divergence-eval`.

use clap::Parser;
use keel::fingerprint::{self, Format};
use keel_control_plane::divergence::{DetectorState, DivergenceConfig, Nudge};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(about = "Evaluate divergence detection on a labelled corpus")]
struct Args {
    /// Directory of `*.jsonl` conversations (see its README.md).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/corpus/divergence"))]
    corpus: PathBuf,
    /// Tail window the sidecar fingerprints per turn.
    #[arg(long, default_value_t = fingerprint::DEFAULT_WINDOW)]
    window: usize,
    /// A control-plane config file (TOML); only its `[divergence]` table is read.
    /// Defaults when absent.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Fail when overall recall on loop conversations is below this.
    #[arg(long, default_value_t = 0.9)]
    min_recall: f64,
    /// Print one line per conversation.
    #[arg(long)]
    verbose: bool,
}

#[derive(Debug, thiserror::Error)]
enum EvalError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {source}")]
    Parse {
        path: String,
        line: usize,
        source: serde_json::Error,
    },
    #[error("{path}: {source}")]
    Toml {
        path: String,
        source: toml::de::Error,
    },
    #[error("{0}")]
    Config(String),
}

#[derive(Deserialize)]
struct Conversation {
    id: String,
    format: String,
    shape: String,
    label: Label,
    messages: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Label {
    Loop { pattern: String, evident_at: usize },
    Healthy,
}

/// First nudge of a replay: the request (history length) it was returned for.
struct Outcome {
    first: Option<(usize, Nudge)>,
    nudges: usize,
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
    let convs = load_corpus(&args.corpus)?;
    #[derive(Default)]
    struct Row {
        n: usize,
        detected: usize,
        right_pattern: usize,
        early: usize,
        delays: Vec<i64>,
    }
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    let mut by_shape: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let (mut healthy, mut fps_convs) = (0usize, Vec::new());
    let mut turns_total = 0usize;
    for c in &convs {
        let fmt = if c.format == "anthropic" {
            Format::Anthropic
        } else {
            Format::OpenAi
        };
        let out = replay(fmt, &c.messages, args.window, &cfg);
        turns_total += c.messages.len();
        let first = out
            .first
            .as_ref()
            .map(|(at, n)| format!("{} at msg {at} turns {:?}", n.pattern, n.turns));
        match &c.label {
            Label::Healthy => {
                healthy += 1;
                if out.nudges > 0 {
                    fps_convs.push(format!("{} ({})", c.id, first.clone().unwrap_or_default()));
                }
            }
            Label::Loop {
                pattern,
                evident_at,
            } => {
                let row = rows.entry(pattern.clone()).or_default();
                row.n += 1;
                let shape = by_shape.entry(c.shape.clone()).or_default();
                shape.0 += 1;
                if let Some((at, n)) = &out.first {
                    row.detected += 1;
                    shape.1 += 1;
                    if n.pattern.as_str() == pattern {
                        row.right_pattern += 1;
                    }
                    let d = delay(&c.messages, *evident_at, *at);
                    if d < 0 {
                        row.early += 1;
                    }
                    row.delays.push(d);
                }
            }
        }
        if args.verbose {
            let label = match &c.label {
                Label::Healthy => "healthy".to_string(),
                Label::Loop {
                    pattern,
                    evident_at,
                } => format!("{pattern}@{evident_at}"),
            };
            println!(
                "{:<44} {:<22} -> {}",
                c.id,
                label,
                first.unwrap_or_else(|| "-".into())
            );
        }
    }
    println!("\npattern            convs  detected  right-pattern  early  mean-delay  max-delay");
    let (mut n, mut det) = (0, 0);
    for (p, r) in &rows {
        n += r.n;
        det += r.detected;
        let mean = if r.delays.is_empty() {
            0.0
        } else {
            r.delays.iter().sum::<i64>() as f64 / r.delays.len() as f64
        };
        let max = r.delays.iter().max().copied().unwrap_or(0);
        println!(
            "{p:<18} {:>5}  {:>8}  {:>13}  {:>5}  {mean:>10.2}  {max:>9}",
            r.n, r.detected, r.right_pattern, r.early
        );
    }
    let all: Vec<i64> = rows
        .values()
        .flat_map(|r| r.delays.iter().copied())
        .collect();
    let mean = if all.is_empty() {
        0.0
    } else {
        all.iter().sum::<i64>() as f64 / all.len() as f64
    };
    let recall = if n == 0 { 1.0 } else { det as f64 / n as f64 };
    let fp_rate = if healthy == 0 {
        0.0
    } else {
        fps_convs.len() as f64 / healthy as f64
    };
    println!(
        "\nrecall by shape: {}",
        by_shape
            .iter()
            .map(|(s, (n, d))| format!("{s} {d}/{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "loops: {det}/{n} detected, recall {recall:.3}; mean delay {mean:.2} turns, max {}",
        all.iter().max().copied().unwrap_or(0)
    );
    println!(
        "healthy: {} conversations, {} nudged, false-positive rate {fp_rate:.3}",
        healthy,
        fps_convs.len()
    );
    for f in &fps_convs {
        println!("  false positive: {f}");
    }
    println!("messages replayed: {turns_total}");
    Ok(fps_convs.is_empty() && recall >= args.min_recall)
}

/// Replays one conversation: a request is routed before every assistant message (its
/// history is everything before it) and once more after the last message.
fn replay(fmt: Format, msgs: &[Value], window: usize, cfg: &DivergenceConfig) -> Outcome {
    let mut state = DetectorState::default();
    let mut out = Outcome {
        first: None,
        nudges: 0,
    };
    let is_assistant = |m: &Value| m.get("role").and_then(Value::as_str) == Some("assistant");
    let requests = (0..msgs.len())
        .filter(|&i| is_assistant(&msgs[i]))
        .chain([msgs.len()]);
    for end in requests {
        // The state goes through its stored form every turn, as in the session store.
        let fps = fingerprint::fingerprint(fmt, &msgs[..end], window);
        if let Some(n) = state.observe(&fps, cfg) {
            out.nudges += 1;
            out.first.get_or_insert((end, n));
        }
        state = roundtrip(&state);
    }
    out
}

fn roundtrip(s: &DetectorState) -> DetectorState {
    serde_json::to_string(s)
        .ok()
        .and_then(|j| serde_json::from_str(&j).ok())
        .unwrap_or_else(|| s.clone())
}

/// Detection delay in assistant turns: requests routed from the one where the loop was
/// evident up to the one that got the nudge. Negative when the nudge came earlier.
fn delay(msgs: &[Value], evident_at: usize, detected_at: usize) -> i64 {
    let is_assistant = |i: &usize| {
        msgs.get(*i)
            .and_then(|m| m.get("role"))
            .and_then(Value::as_str)
            == Some("assistant")
            || *i == msgs.len()
    };
    if detected_at >= evident_at {
        (evident_at..detected_at).filter(is_assistant).count() as i64
    } else {
        -((detected_at..evident_at).filter(is_assistant).count() as i64)
    }
}

fn load_config(path: Option<&Path>) -> Result<DivergenceConfig, EvalError> {
    let cfg = match path {
        None => DivergenceConfig::default(),
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| EvalError::Io {
                path: p.display().to_string(),
                source,
            })?;
            #[derive(Deserialize)]
            struct File {
                #[serde(default)]
                divergence: DivergenceConfig,
            }
            let file: File = toml::from_str(&text).map_err(|source| EvalError::Toml {
                path: p.display().to_string(),
                source,
            })?;
            file.divergence
        }
    };
    cfg.validate()
        .map_err(|e| EvalError::Config(e.to_string()))?;
    Ok(cfg)
}

fn load_corpus(dir: &Path) -> Result<Vec<Conversation>, EvalError> {
    let io = |source| EvalError::Io {
        path: dir.display().to_string(),
        source,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let path = f.display().to_string();
        let text = std::fs::read_to_string(&f).map_err(|source| EvalError::Io {
            path: path.clone(),
            source,
        })?;
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let c = serde_json::from_str(line).map_err(|source| EvalError::Parse {
                path: path.clone(),
                line: i + 1,
                source,
            })?;
            out.push(c);
        }
    }
    Ok(out)
}
