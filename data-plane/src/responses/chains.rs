//! Which conversation a response belongs to, so that a request continuing it with
//! `previous_response_id` (and nothing else naming the conversation) stays on it.
//! Bounded and in memory: two generations of at most [`GENERATION`] ids each, the
//! older dropped whole when the younger fills up; a restart forgets the chains
//! (harness session headers survive it).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use keel::pb::SessionSource;

/// Response ids per generation (at most twice this many are kept).
const GENERATION: usize = 50_000;

#[derive(Clone)]
struct Entry {
    conversation: Arc<str>,
    source: SessionSource,
}

#[derive(Default)]
struct Generations {
    young: HashMap<u128, Entry>,
    old: HashMap<u128, Entry>,
}

/// Response id → conversation, keyed by the id's 128-bit xxh3.
#[derive(Default)]
pub struct Chains {
    inner: Mutex<Generations>,
}

fn key(response_id: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(response_id.as_bytes())
}

impl Chains {
    /// Remembers that `response_id` answered a turn of `conversation`.
    pub fn remember(&self, response_id: &str, conversation: &Arc<str>, source: SessionSource) {
        let entry = Entry {
            conversation: Arc::clone(conversation),
            source,
        };
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let dropped = if g.young.len() >= GENERATION {
            let young = std::mem::take(&mut g.young);
            Some(std::mem::replace(&mut g.old, young))
        } else {
            None
        };
        g.young.insert(key(response_id), entry);
        drop(g);
        // Freeing a whole generation happens outside the lock.
        drop(dropped);
    }

    /// The conversation `response_id` belongs to, if remembered.
    pub fn conversation_of(&self, response_id: &str) -> Option<(String, SessionSource)> {
        let k = key(response_id);
        let g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        g.young
            .get(&k)
            .or_else(|| g.old.get(&k))
            .map(|e| (e.conversation.to_string(), e.source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_are_remembered_and_bounded() {
        let chains = Chains::default();
        let conv: Arc<str> = Arc::from("conv-1");
        chains.remember("resp_a", &conv, SessionSource::Harness);
        assert_eq!(
            chains.conversation_of("resp_a"),
            Some(("conv-1".to_owned(), SessionSource::Harness))
        );
        assert_eq!(chains.conversation_of("resp_b"), None);
        for i in 0..2 * GENERATION + 1 {
            chains.remember(&format!("r{i}"), &conv, SessionSource::Header);
        }
        let g = chains.inner.lock().unwrap();
        assert!(g.young.len() + g.old.len() <= 2 * GENERATION);
        drop(g);
        assert_eq!(chains.conversation_of("resp_a"), None, "oldest dropped");
    }
}
