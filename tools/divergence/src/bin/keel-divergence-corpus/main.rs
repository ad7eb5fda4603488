//! Renders the divergence corpus (`loops.jsonl`, `healthy.jsonl`) that
//! `keel-divergence-eval` replays from its scripts, data files in
//! `tools/divergence/scripts/` (format: `render.rs`; placeholders: `script.rs`).
//!
//! Deterministic: the same scripts always render the same bytes, so the corpus is
//! reviewable in diffs, the eval figures are reproducible, and a test fails when the
//! committed corpus and the scripts drift apart.
//!
//! Usage: `cargo run -p keel-divergence-tools --bin keel-divergence-corpus [-- --check]`
//! (`--scripts DIR`, `--out DIR` to override the defaults).

mod render;
mod script;

use clap::Parser;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(about = "Render the divergence corpus from its scripts")]
struct Args {
    /// Directory of the scripts (`loops.json`, `healthy.json`).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts"))]
    scripts: PathBuf,
    /// Directory the corpus is written to.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../control-plane/corpus/divergence"))]
    out: PathBuf,
    /// Compare with the files in `--out` instead of writing; exit 1 when they differ.
    #[arg(long)]
    check: bool,
}

/// The corpus files and the scripts each is rendered from.
const FILES: [(&str, &str); 2] = [
    ("loops.json", "loops.jsonl"),
    ("healthy.json", "healthy.jsonl"),
];

fn main() {
    let args = Args::parse();
    let mut drift = false;
    for (script, corpus) in FILES {
        let text = match render_file(&args.scripts.join(script)) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("corpus: {e}");
                std::process::exit(2);
            }
        };
        let path = args.out.join(corpus);
        if args.check {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                eprintln!(
                    "corpus: {} differs from its scripts; re-render it",
                    path.display()
                );
                drift = true;
            }
        } else if let Err(e) = std::fs::write(&path, &text) {
            eprintln!("corpus: {}: {e}", path.display());
            std::process::exit(2);
        } else {
            eprintln!(
                "wrote {} conversations to {}",
                text.lines().count(),
                path.display()
            );
        }
    }
    if drift {
        std::process::exit(1);
    }
}

/// One corpus file's bytes: every script of `path` rendered, one conversation a line.
fn render_file(path: &Path) -> Result<String, String> {
    let raw = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let scripts: Vec<render::Script> =
        serde_json::from_str(&raw).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = String::new();
    for s in &scripts {
        for conv in render::render(s)? {
            out.push_str(&conv.into_json().to_string());
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_corpus_matches_its_scripts() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for (script, corpus) in FILES {
            let rendered = render_file(&root.join("scripts").join(script)).unwrap();
            let committed = std::fs::read_to_string(
                root.join("../../control-plane/corpus/divergence")
                    .join(corpus),
            )
            .unwrap();
            assert!(
                rendered == committed,
                "{corpus} drifted from scripts/{script}: run \
                 `cargo run -p keel-divergence-tools --bin keel-divergence-corpus`"
            );
        }
    }

    #[test]
    fn placeholders_expand_and_unknown_ones_are_errors() {
        let mut c = script::Conv::new("x", script::Fmt::OpenAi, "tool", "");
        let s = c.expand("at {{ts}} id {{hex:7}} took {{dur}}").unwrap();
        assert!(!s.contains("{{"), "{s}");
        assert!(c.expand("{{nope}}").is_err());
        assert!(c.expand("{{ts").is_err());
    }
}
