//! A damaged store never looks like an empty one. A store is sealed: a
//! marker file beside sled's files (`KEEL_STORE`) and a record inside sled
//! carry the same seal, advanced at every start. At start:
//!
//! * no directory, or an empty one: a new store, sealed now;
//! * sled's files without a marker: a store of an earlier version, adopted;
//! * a marker but sled will not open, has no seal record (its files were
//!   replaced or emptied) or an older seal than the marker (it lost writes
//!   made before the last start or clean stop, e.g. truncated): damaged;
//! * anything else in the directory: not a Keel store.
//!
//! Damaged means the control plane refuses to start with a message naming
//! the path and what to do, unless `--fresh-store`, which moves the old
//! directory aside (never deletes it) and starts empty.

use std::path::{Path, PathBuf};

/// Marker file in the store's directory.
pub const MARKER_FILE: &str = "KEEL_STORE";
const MARKER_HEADER: &str = "keel-store 1";
const SEAL_TREE: &[u8] = b"keel_seal";
const SEAL_KEY: &[u8] = b"seal";

/// What the directory held before sled opened it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    New,
    /// Sealed with this value at its last start.
    Sealed(u64),
    /// sled's files from a version without seals.
    Unsealed,
}

/// The store cannot be trusted; the message says where and what to do.
#[derive(Debug, thiserror::Error)]
#[error(
    "the session store at {} is damaged: {what}. Restore the directory \
     from a backup, or start with --fresh-store to move it aside (to <path>.damaged-<time>) \
     and begin with an empty store (every session and pin is then forgotten)",
    path.display()
)]
pub struct Damaged {
    pub path: PathBuf,
    pub what: String,
}

fn damaged(path: &Path, what: impl Into<String>) -> Damaged {
    Damaged {
        path: path.to_owned(),
        what: what.into(),
    }
}

/// Looks at the directory before sled opens it.
pub fn before_open(path: &Path) -> Result<Expect, Damaged> {
    inspect(path)
}

fn inspect(path: &Path) -> Result<Expect, Damaged> {
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Expect::New),
        Err(e) => return Err(damaged(path, format!("cannot read the directory: {e}"))),
    };
    let names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if names.is_empty() {
        return Ok(Expect::New);
    }
    if names.iter().any(|n| n == MARKER_FILE) {
        let text = std::fs::read_to_string(path.join(MARKER_FILE)).unwrap_or_default();
        return parse_marker(&text)
            .map(Expect::Sealed)
            .ok_or_else(|| damaged(path, format!("its {MARKER_FILE} file is unreadable")));
    }
    if names.iter().any(|n| n == "db") && names.iter().any(|n| n == "conf") {
        return Ok(Expect::Unsealed);
    }
    Err(damaged(
        path,
        "the directory is not empty and holds no Keel store",
    ))
}

fn parse_marker(text: &str) -> Option<u64> {
    let mut lines = text.lines();
    (lines.next()? == MARKER_HEADER).then_some(())?;
    lines.next()?.strip_prefix("seal ")?.parse().ok()
}

/// The refusal when sled cannot open what should be a store.
/// (Another process holding sled's lock is not damage.)
pub fn unopenable(path: &Path, expect: Expect, error: &dyn std::fmt::Display) -> Option<Damaged> {
    let text = error.to_string();
    (expect != Expect::New && !text.contains("could not acquire lock"))
        .then(|| damaged(path, format!("sled cannot open it ({text})")))
}

/// The open store's seal, advanced again at a clean stop ([`Seal::close`]):
/// a store cut back to before its last writes then shows an older seal.
pub struct Seal {
    db: sled::Db,
    path: PathBuf,
    value: u64,
}

impl Seal {
    /// Advances the seal after the store's last flush.
    pub fn close(&self) -> Result<(), Damaged> {
        advance(&self.db, &self.path, self.value + 1)
    }
}

/// Checks sled's seal against the marker, then advances both (sled first,
/// flushed, so a crash between the two leaves sled ahead, which is fine).
pub fn after_open(db: &sled::Db, path: &Path, expect: Expect) -> Result<Seal, Damaged> {
    let io = |e: sled::Error| damaged(path, format!("cannot read its seal ({e})"));
    let tree = db.open_tree(SEAL_TREE).map_err(io)?;
    let stored = tree
        .get(SEAL_KEY)
        .map_err(io)?
        .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map(u64::from_be_bytes);
    let last = match (expect, stored) {
        (Expect::Sealed(_), None) => {
            return Err(damaged(
                path,
                "its records are gone (the seal record is missing: its files were replaced or emptied)",
            ));
        }
        (Expect::Sealed(marker), Some(s)) if s < marker => {
            return Err(damaged(
                path,
                format!(
                    "it lost writes (seal {s} is older than the marker's {marker}: truncated or restored from an old copy)"
                ),
            ));
        }
        (_, s) => s.unwrap_or(0),
    };
    let value = last + 1;
    advance(db, path, value)?;
    Ok(Seal {
        db: db.clone(),
        path: path.to_owned(),
        value,
    })
}

fn advance(db: &sled::Db, path: &Path, value: u64) -> Result<(), Damaged> {
    let io = |e: sled::Error| damaged(path, format!("cannot write its seal ({e})"));
    db.open_tree(SEAL_TREE)
        .and_then(|tree| tree.insert(SEAL_KEY, &value.to_be_bytes()))
        .map_err(io)?;
    db.flush().map_err(io)?;
    write_marker(path, value).map_err(|e| damaged(path, format!("cannot write {MARKER_FILE}: {e}")))
}

fn write_marker(path: &Path, seal: u64) -> std::io::Result<()> {
    let tmp = path.join(format!("{MARKER_FILE}.tmp"));
    std::fs::write(&tmp, format!("{MARKER_HEADER}\nseal {seal}\n"))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path.join(MARKER_FILE))
}

/// `--fresh-store`: moves the damaged directory to `<path>.damaged-<secs>`.
pub fn move_aside(why: &Damaged) -> Result<(), Damaged> {
    let path = why.path.as_path();
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".damaged-{secs}"));
    std::fs::rename(path, &aside)
        .map_err(|e| damaged(path, format!("{} and cannot be moved aside: {e}", why.what)))?;
    tracing::warn!(path = %path.display(), moved_to = %PathBuf::from(&aside).display(), reason = %why.what, "damaged session store moved aside; starting with an empty one (--fresh-store)");
    Ok(())
}

#[cfg(test)]
#[path = "store_guard_tests.rs"]
mod tests;
