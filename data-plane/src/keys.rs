//! Provider keys, resolved on this host from `KEEL_KEY_<REF>` env vars or
//! from `--keys-file` (the same `KEEL_KEY_<REF>=secret` lines, readable by
//! its owner only). The control plane only ever names a reference.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

/// A provider secret. `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Cache of resolved keys (the environment does not change under us).
#[derive(Default)]
pub struct Keys {
    cache: RwLock<HashMap<String, Option<Secret>>>,
    /// Keys from `--keys-file`, by env var name; they win over the env.
    file: HashMap<String, Secret>,
}

/// Why `--keys-file` was refused. Never quotes the file's content.
#[derive(Debug, thiserror::Error)]
pub enum KeysFileError {
    #[error("cannot read --keys-file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "--keys-file {path} is readable by others (mode {mode:o}); it holds provider keys: chmod 600 it"
    )]
    Permissions { path: String, mode: u32 },
    #[error("--keys-file {path} line {line}: expected KEEL_KEY_<REF>=secret")]
    Syntax { path: String, line: usize },
}

impl Keys {
    /// Keys from the environment and, if given, the keys file.
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, KeysFileError> {
        let Some(path) = file else {
            return Ok(Self::default());
        };
        let shown = path.display().to_string();
        let read = |source| KeysFileError::Read {
            path: shown.clone(),
            source,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).map_err(read)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeysFileError::Permissions { path: shown, mode });
            }
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        let mut file = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, secret) = line
                .split_once('=')
                .filter(|(n, s)| n.trim().starts_with("KEEL_KEY_") && !s.trim().is_empty())
                .ok_or(KeysFileError::Syntax {
                    path: shown.clone(),
                    line: i + 1,
                })?;
            file.insert(name.trim().to_owned(), Secret(secret.trim().into()));
        }
        Ok(Self {
            file,
            ..Self::default()
        })
    }

    /// The secret for `key_ref`, if this host has one.
    pub fn get(&self, key_ref: &str) -> Option<Secret> {
        if let Some(hit) = self
            .cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key_ref)
        {
            return hit.clone();
        }
        let var = keel::keys::env_var_for(key_ref);
        let secret = self.file.get(&var).cloned().or_else(|| {
            std::env::var(&var)
                .ok()
                .filter(|s| !s.is_empty())
                .map(|s| Secret(s.into()))
        });
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key_ref.to_owned(), secret.clone());
        secret
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_keys_file_is_read_only_when_its_owner_alone_can_read_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.env");
        std::fs::write(
            &path,
            "# provider keys\nKEEL_KEY_FILE_ONLY_REF=sk-from-file\n\n",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Keys::load(Some(&path)).err().unwrap().to_string();
        assert!(
            e.contains("chmod 600") && !e.contains("sk-from-file"),
            "{e}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let keys = Keys::load(Some(&path)).unwrap();
        assert_eq!(keys.get("file-only-ref").unwrap().expose(), "sk-from-file");
        assert!(keys.get("absent-ref").is_none());
        std::fs::write(&path, "sk-no-name\n").unwrap();
        let e = Keys::load(Some(&path)).err().unwrap().to_string();
        assert!(e.contains("line 1") && !e.contains("sk-no-name"), "{e}");
    }
}
