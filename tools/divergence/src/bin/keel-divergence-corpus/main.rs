//! Writes the labelled divergence corpus (`loops.jsonl`, `healthy.jsonl`) that
//! `keel-divergence-eval` replays.
//!
//! Deterministic: the same binary always writes the same bytes, so the corpus is
//! reviewable in diffs and the eval figures are reproducible. Volatile values (call ids,
//! timestamps, durations, temp dirs, request ids) come from a seeded generator so that
//! normalization is exercised, as in real traffic.
//!
//! Usage: `cargo run -p keel-divergence-tools --bin keel-divergence-corpus [-- DIR]`
//! (default DIR: `control-plane/corpus/divergence`).

mod healthy;
mod loops;
mod script;

use script::Conv;
use std::io::Write;

fn main() -> std::io::Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../control-plane/corpus/divergence"
        )
        .into()
    });
    std::fs::create_dir_all(&dir)?;
    write(&format!("{dir}/loops.jsonl"), loops::all())?;
    write(&format!("{dir}/healthy.jsonl"), healthy::all())?;
    Ok(())
}

fn write(path: &str, convs: Vec<Conv>) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let n = convs.len();
    for c in convs {
        writeln!(f, "{}", c.into_json())?;
    }
    f.flush()?;
    eprintln!("wrote {n} conversations to {path}");
    Ok(())
}
