//! Provider keys, resolved on this host from `KEEL_KEY_<REF>` env vars. The
//! control plane only ever names a reference.

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
}

impl Keys {
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
        let secret = std::env::var(keel::keys::env_var_for(key_ref))
            .ok()
            .filter(|s| !s.is_empty())
            .map(|s| Secret(s.into()));
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key_ref.to_owned(), secret.clone());
        secret
    }
}
