//! A bounded cache of per-message fingerprints, shared by every request of a sidecar.
//!
//! Each turn the sidecar fingerprints the last [`super::DEFAULT_WINDOW`] messages, and all
//! but the few the agent just appended were fingerprinted on earlier turns. A message's
//! fingerprint is a pure function of its JSON value and of one bit of context (whether it
//! answers fenced commands), so it can be keyed by a 128-bit xxh3 of that value: the key
//! walks the `serde_json::Value` tree into a small tagged, length-prefixed encoding (no two
//! trees encode the same; strings longer than 32 bytes by their own 128-bit xxh3) without
//! serializing it, which costs a fraction of normalizing.
//! The message's position is not part of the key: it is patched in on a hit, so the same
//! message moved by context compaction still hits.
//!
//! Memory is bounded: at most `capacity` entries (default [`FingerprintCache::DEFAULT_CAPACITY`], 64k ≈ 8-12
//! MB with the hash maps' slack), each a few fixed fields plus at most
//! `MAX_CACHED_ACTIONS` (16) action hashes. Messages with more actions, or nested deeper than
//! anything fingerprinting reads, are computed every time instead. Eviction is by
//! generation: each shard fills a young map; when it is full the old map is dropped (outside
//! the lock) and the young one becomes old. A hit in the old map is promoted, so what every
//! turn re-reads stays.

use std::io::Write as _;

use serde_json::Value;
use xxhash_rust::xxh3::xxh3_128;

use super::{Format, Message, Role, TurnFp};
use crate::gencache::GenerationCache;

/// Messages with more actions than this are not cached (rare; keeps entries small).
const MAX_CACHED_ACTIONS: usize = 16;

/// Values nested deeper than this are not keyed: fingerprinting reads at most ~40 levels
/// (tool arguments are cut at 32 below the call), so such a message is computed directly.
const MAX_KEY_DEPTH: usize = 64;

/// What `fingerprint_one` returned for a message, minus its index.
struct Entry {
    /// `None` for a message that produces no fingerprint (system, malformed).
    role: Option<Role>,
    /// The message acts through fenced commands (context for the next message).
    fenced: bool,
    is_error: bool,
    text_hash: u64,
    result_hash: u64,
    error_hash: u64,
    text_simhash: u64,
    result_simhash: u64,
    result_size: u32,
    action_simhash: u64,
    result_shape_hash: u64,
    /// Action hashes followed by action name hashes (same length each).
    actions: Box<[u64]>,
}

impl Entry {
    fn new(computed: Option<&(TurnFp, bool)>) -> Option<Entry> {
        let Some((fp, fenced)) = computed else {
            return Some(Entry {
                role: None,
                fenced: false,
                is_error: false,
                text_hash: 0,
                result_hash: 0,
                error_hash: 0,
                text_simhash: 0,
                result_simhash: 0,
                result_size: 0,
                action_simhash: 0,
                result_shape_hash: 0,
                actions: Box::default(),
            });
        };
        if fp.action_hashes.len() > MAX_CACHED_ACTIONS
            || fp.action_hashes.len() != fp.action_name_hashes.len()
        {
            return None;
        }
        let actions: Box<[u64]> = fp
            .action_hashes
            .iter()
            .chain(&fp.action_name_hashes)
            .copied()
            .collect();
        Some(Entry {
            role: Some(fp.role),
            fenced: *fenced,
            is_error: fp.is_error,
            text_hash: fp.text_hash,
            result_hash: fp.result_hash,
            error_hash: fp.error_hash,
            text_simhash: fp.text_simhash,
            result_simhash: fp.result_simhash,
            result_size: fp.result_size,
            action_simhash: fp.action_simhash,
            result_shape_hash: fp.result_shape_hash,
            actions,
        })
    }

    fn to_result(&self, index: u32) -> Option<(TurnFp, bool)> {
        let role = self.role?;
        let (actions, names) = self.actions.split_at(self.actions.len() / 2);
        let fp = TurnFp {
            index,
            role,
            text_hash: self.text_hash,
            action_hashes: actions.to_vec(),
            action_name_hashes: names.to_vec(),
            is_error: self.is_error,
            result_hash: self.result_hash,
            error_hash: self.error_hash,
            text_simhash: self.text_simhash,
            result_simhash: self.result_simhash,
            result_size: self.result_size,
            action_simhash: self.action_simhash,
            result_shape_hash: self.result_shape_hash,
        };
        Some((fp, self.fenced))
    }
}

/// Bounded, thread-safe cache of message fingerprints; see the module docs. One per
/// sidecar, shared by all requests.
pub struct FingerprintCache {
    entries: GenerationCache<Entry>,
}

impl Default for FingerprintCache {
    fn default() -> Self {
        FingerprintCache::new(FingerprintCache::DEFAULT_CAPACITY)
    }
}

impl std::fmt::Debug for FingerprintCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FingerprintCache")
            .field("capacity", &self.entries.capacity())
            .field("len", &self.len())
            .finish()
    }
}

impl FingerprintCache {
    /// Default number of entries: 64k, several thousand conversations' windows.
    pub const DEFAULT_CAPACITY: usize = 64 * 1024;

    /// A cache holding at most `capacity` entries (rounded up to a multiple of 32).
    pub fn new(capacity: usize) -> Self {
        FingerprintCache {
            entries: GenerationCache::new(capacity),
        }
    }

    /// Entries currently held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Exactly [`super::fingerprint`], computing only the messages not seen before.
    pub fn fingerprint(&self, format: Format, messages: &[Value], window: usize) -> Vec<TurnFp> {
        super::fingerprint_with(Some(self), format, messages, 0, window)
    }

    /// [`FingerprintCache::fingerprint_proto`] of a history of which only the
    /// messages from index `offset` on are at hand: equal to it when `tail`
    /// holds at least `window + 1` messages (the window and the one before
    /// it) or the whole history (`offset` 0). A sidecar passes those as the
    /// app wrote them (`&str`): a message seen on an earlier turn is then
    /// not parsed at all.
    pub fn fingerprint_tail_proto<M: Message>(
        &self,
        format: Format,
        tail: &[M],
        offset: usize,
        window: usize,
    ) -> Vec<crate::pb::TurnFingerprint> {
        super::into_proto(super::fingerprint_with(
            Some(self),
            format,
            tail,
            offset,
            window,
        ))
    }

    /// Exactly [`super::fingerprint_proto`], computing only the messages not seen before.
    pub fn fingerprint_proto(
        &self,
        format: Format,
        messages: &[Value],
        window: usize,
    ) -> Vec<crate::pb::TurnFingerprint> {
        super::into_proto(self.fingerprint(format, messages, window))
    }

    /// `fingerprint_one(format, msg, index, fenced_pending)`, from the cache when possible.
    pub(crate) fn fingerprint_one<M: Message>(
        &self,
        format: Format,
        msg: &M,
        index: u32,
        fenced_pending: bool,
        buf: &mut Vec<u8>,
    ) -> Option<(TurnFp, bool)> {
        let key = match msg.text() {
            Some(text) => Some(text_key(format, text, fenced_pending)),
            None => key(format, &msg.value(), fenced_pending, buf),
        };
        let Some(key) = key else {
            return super::message::fingerprint_one(format, &msg.value(), index, fenced_pending);
        };
        if let Some(hit) = self.entries.get(key, |e| e.to_result(index)) {
            return hit;
        }
        let computed = super::message::fingerprint_one(format, &msg.value(), index, fenced_pending);
        if let Some(entry) = Entry::new(computed.as_ref()) {
            self.entries.insert(key, entry);
        }
        computed
    }

    /// `ends_with_fenced_action(format, msg)`: the `fenced` bit cached with the message when
    /// it was in an earlier turn's window. Equal because both are "assistant, no native
    /// call, at least one fenced command", and an assistant message's entry does not depend
    /// on the context bit (a message's text is keyed with it, so both are looked for; any
    /// other role's entry says false, as its `fenced` is always false).
    pub(crate) fn ends_with_fenced_action<M: Message>(
        &self,
        format: Format,
        msg: &M,
        buf: &mut Vec<u8>,
    ) -> bool {
        if let Some(text) = msg.text() {
            return [false, true]
                .into_iter()
                .find_map(|c| self.entries.get(text_key(format, text, c), |e| e.fenced))
                .unwrap_or_else(|| super::message::ends_with_fenced_action(format, &msg.value()));
        }
        let msg = msg.value();
        if !super::message::is_assistant(&msg) {
            return false;
        }
        key(format, &msg, false, buf)
            .and_then(|k| self.entries.get(k, |e| e.fenced))
            .unwrap_or_else(|| super::message::ends_with_fenced_action(format, &msg))
    }
}

/// The cache key of a message's JSON text in a given context: its bytes, not
/// its parse (tags 3 and 4, apart from the parsed keys' 1 and 2).
fn text_key(format: Format, text: &str, fenced_pending: bool) -> u128 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(&[
        match format {
            Format::OpenAi => 3,
            Format::Anthropic => 4,
        },
        u8::from(fenced_pending),
    ]);
    hasher.update(text.as_bytes());
    hasher.digest128()
}

/// Strings longer than this enter the key as their own 128-bit xxh3: one pass over the
/// bytes instead of a copy into the key buffer.
const INLINE_STRING: usize = 32;

/// The cache key of `msg` in a given context, or `None` when it is too deep to key. `buf`
/// is scratch space reused across the messages of a turn.
fn key(format: Format, msg: &Value, fenced_pending: bool, buf: &mut Vec<u8>) -> Option<u128> {
    // The context bit only changes how a user message is read; leaving it out for other
    // roles lets the look-back before the window find the assistant message's entry.
    let context = fenced_pending && msg.get("role").and_then(Value::as_str) == Some("user");
    buf.clear();
    buf.push(match format {
        Format::OpenAi => 1,
        Format::Anthropic => 2,
    });
    buf.push(u8::from(context));
    walk(msg, buf, 0).then(|| xxh3_128(buf))
}

/// Appends a tagged, length-prefixed encoding of `v` (no two values encode the same), long
/// strings by their hash. False when too deep.
fn walk(v: &Value, buf: &mut Vec<u8>, depth: usize) -> bool {
    if depth > MAX_KEY_DEPTH {
        return false;
    }
    match v {
        Value::Null => buf.push(b'n'),
        Value::Bool(b) => buf.push(if *b { b't' } else { b'f' }),
        Value::Number(n) => {
            // Its text form, which is what canonical arguments use; no digit is a ';'.
            buf.push(b'#');
            let _ = write!(buf, "{n};");
        }
        Value::String(s) => string(s, buf),
        Value::Array(a) => {
            buf.push(b'[');
            buf.extend_from_slice(&(a.len() as u64).to_le_bytes());
            for x in a {
                if !walk(x, buf, depth + 1) {
                    return false;
                }
            }
        }
        Value::Object(m) => {
            buf.push(b'{');
            buf.extend_from_slice(&(m.len() as u64).to_le_bytes());
            for (k, x) in m {
                string(k, buf);
                if !walk(x, buf, depth + 1) {
                    return false;
                }
            }
        }
    }
    true
}

fn string(s: &str, buf: &mut Vec<u8>) {
    if s.len() <= INLINE_STRING {
        buf.push(b's');
        buf.push(s.len() as u8);
        buf.extend_from_slice(s.as_bytes());
    } else {
        buf.push(b'h');
        buf.extend_from_slice(&xxh3_128(s.as_bytes()).to_le_bytes());
    }
}
