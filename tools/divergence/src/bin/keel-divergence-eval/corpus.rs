//! Loads both labelled sets into one shape: the generated corpus (`label.kind`,
//! `evident_at`) and the development set of real agent conversations
//! (`loop_starts_at_turn`, `meta.action_format`, see `shared/divergence-dev/README.md`).

use keel::fingerprint::Format;
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// One labelled conversation, whatever set it came from.
pub struct Case {
    pub id: String,
    /// Wire shape of `messages`.
    pub wire: Format,
    /// `text` (fenced commands) or `tool_calls`.
    pub action_format: &'static str,
    /// Agent family (dev set) or generated shape.
    pub source: String,
    /// Loop start as in the dev set's protocol: an alarm at request `t` is a hit when
    /// `t > start`. `None` when healthy.
    pub loop_start: Option<usize>,
    /// For a recovered loop, the first message that makes progress again.
    pub loop_end: Option<usize>,
    pub hard_negative: bool,
    /// Pattern the generated corpus expects (informational).
    pub pattern: Option<String>,
    pub messages: Vec<Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
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
}

#[derive(Deserialize)]
struct Generated {
    id: String,
    format: String,
    shape: String,
    label: GenLabel,
    messages: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum GenLabel {
    Loop { pattern: String, evident_at: usize },
    Healthy,
}

#[derive(Deserialize)]
struct Dev {
    id: String,
    loop_starts_at_turn: Option<usize>,
    meta: DevMeta,
    messages: Vec<Value>,
}

#[derive(Deserialize)]
struct DevMeta {
    action_format: String,
    #[serde(default)]
    hard_negative: bool,
    #[serde(default)]
    loop_ends_at_turn: Option<usize>,
}

/// Every `*.jsonl` of the generated corpus directory.
pub fn load_generated(dir: &Path) -> Result<Vec<Case>, LoadError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| LoadError::Io {
            path: dir.display().to_string(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        for g in lines::<Generated>(&f)? {
            let (loop_start, pattern) = match g.label {
                // `evident_at` is the first request that shows the loop.
                GenLabel::Loop {
                    pattern,
                    evident_at,
                } => (Some(evident_at.saturating_sub(1)), Some(pattern)),
                GenLabel::Healthy => (None, None),
            };
            out.push(Case {
                action_format: action_format(&g.messages),
                wire: if g.format == "anthropic" {
                    Format::Anthropic
                } else {
                    Format::OpenAi
                },
                id: g.id,
                source: g.shape,
                loop_start,
                loop_end: None,
                hard_negative: false,
                pattern,
                messages: g.messages,
            });
        }
    }
    Ok(out)
}

/// The development set (one file).
pub fn load_dev(path: &Path) -> Result<Vec<Case>, LoadError> {
    Ok(lines::<Dev>(path)?
        .into_iter()
        .map(|d| Case {
            source: family(&d.id).to_owned(),
            action_format: if d.meta.action_format == "text" {
                "text"
            } else {
                "tool_calls"
            },
            wire: Format::OpenAi,
            id: d.id,
            loop_start: d.loop_starts_at_turn,
            loop_end: d.meta.loop_ends_at_turn,
            hard_negative: d.meta.hard_negative,
            pattern: None,
            messages: d.messages,
        })
        .collect())
}

/// Agent family from a dev-set id (`dev-swea-…`, `dev-mini-…`, `dev-tau-…`, `dev-oh-…`).
fn family(id: &str) -> &'static str {
    match id.split('-').nth(1) {
        Some("swea") => "SWE-agent",
        Some("mini") => "mini-swe-agent",
        Some("tau") => "tau-bench",
        Some("oh") => "OpenHands",
        _ => "other",
    }
}

/// `tool_calls` when any assistant message calls a tool natively, else `text`.
fn action_format(messages: &[Value]) -> &'static str {
    let native = messages.iter().any(|m| {
        m.get("tool_calls").is_some_and(|t| t.is_array())
            || m.get("content").and_then(Value::as_array).is_some_and(|b| {
                b.iter()
                    .any(|b| b.get("type").and_then(Value::as_str) == Some("tool_use"))
            })
    });
    if native { "tool_calls" } else { "text" }
}

fn lines<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, LoadError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: p.clone(),
        source,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|source| LoadError::Parse {
                path: p.clone(),
                line: i + 1,
                source,
            })
        })
        .collect()
}
