//! 64-bit simhash of prose, for "the agent is asking the same thing again" checks where
//! the wording drifts a little between turns.

use super::h;

/// Texts with fewer words than this get no simhash: short replies ("Done.", "yes") repeat
/// legitimately and carry too little signal for near-duplicate matching.
pub(crate) const MIN_WORDS: usize = 5;

/// Only the opening of a message is needed to tell a repeated question.
pub(crate) const MAX_CHARS: usize = 4096;

/// Simhash over word unigrams (bag of words: paraphrases reorder words more than they
/// change them) of lowercased text; digits are folded to `0`
/// so that the same question about a different number still matches. Returns 0 when the
/// text is too short.
pub(crate) fn simhash(text: &str) -> u64 {
    simhash_of_prefix(text, MAX_CHARS)
}

/// [`simhash`] of the first `max_chars` characters only.
pub(crate) fn simhash_of_prefix(text: &str, max_chars: usize) -> u64 {
    let mut counts = [0i32; 64];
    let mut words = 0usize;
    let mut word = String::new();
    let mut chars = text.chars().take(max_chars);
    loop {
        let c = chars.next();
        match c {
            Some(c) if c.is_alphanumeric() => {
                let c = if c.is_ascii_digit() { '0' } else { c };
                word.extend(c.to_lowercase());
                continue;
            }
            _ => {}
        }
        if !word.is_empty() {
            add(h(word.as_bytes()), &mut counts);
            words += 1;
            word.clear();
        }
        if c.is_none() {
            break;
        }
    }
    if words < MIN_WORDS {
        return 0;
    }
    let x = counts.iter().enumerate().fold(
        0u64,
        |acc, (bit, c)| if *c > 0 { acc | 1 << bit } else { acc },
    );
    if x == 0 { 1 } else { x }
}

fn add(x: u64, counts: &mut [i32; 64]) {
    for (bit, c) in counts.iter_mut().enumerate() {
        *c += if (x >> bit) & 1 == 1 { 1 } else { -1 };
    }
}
