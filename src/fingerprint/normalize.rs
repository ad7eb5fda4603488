//! Removes volatile values (ids, timestamps, addresses, durations, temp dirs, line
//! counters) so that two runs of the same action or two identical outcomes hash the same.
//!
//! Business identifiers are kept on purpose: `order_id: "#W2378156"` or a flight date must
//! still tell two different lookups apart, otherwise reading several records would look
//! like a loop. Only values that change on every run without meaning anything are erased.

/// Longest prefix/suffix hashed for very long contents; bounds cost per message.
pub(crate) const CAP: usize = 2048;

/// How a string is normalized.
#[derive(Clone, Copy)]
pub(crate) struct Mode {
    /// Collapse whitespace runs to one space (results, commands, prose); arguments keep it
    /// because an edit that only changes indentation is a different edit.
    pub collapse_ws: bool,
    /// Tool output: erase line counters (`line 42`, `cat -n` prefixes), which edits shift
    /// without changing what the output means, and short hex ids (commit/stash shas).
    pub output: bool,
    /// Lowercase everything (prose).
    pub lowercase: bool,
}

pub(crate) const ARGS: Mode = Mode {
    collapse_ws: false,
    output: false,
    lowercase: false,
};
pub(crate) const RESULT: Mode = Mode {
    collapse_ws: true,
    output: true,
    lowercase: false,
};
pub(crate) const PROSE: Mode = Mode {
    collapse_ws: true,
    output: false,
    lowercase: true,
};
pub(crate) const COMMAND: Mode = Mode {
    collapse_ws: true,
    output: false,
    lowercase: false,
};

/// Appends the normalized form of `s` to `out`. Long inputs are reduced to their head and
/// tail (`CAP` bytes each): loops repeat whole outputs, so the ends are enough to compare.
pub(crate) fn normalize_into(s: &str, mode: Mode, out: &mut String) {
    if s.len() > 2 * CAP {
        let head = &s[..floor_char(s, CAP)];
        let tail = &s[ceil_char(s, s.len() - CAP)..];
        normalize_body(head, mode, out);
        out.push_str(" <cut> ");
        normalize_body(tail, mode, out);
    } else {
        normalize_body(s, mode, out);
    }
}

/// Convenience wrapper returning a new string.
pub(crate) fn normalize(s: &str, mode: Mode) -> String {
    let mut out = String::with_capacity(s.len().min(2 * CAP + 16));
    normalize_into(s, mode, &mut out);
    out
}

fn floor_char(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char(s: &str, mut i: usize) -> usize {
    while i < s.len() && !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

fn normalize_body(s: &str, mode: Mode, out: &mut String) {
    let mut prev_was_line_word = false;
    for (li, line) in s.split('\n').enumerate() {
        let line = if mode.output {
            strip_line_number(line)
        } else {
            line
        };
        if li > 0 {
            out.push(if mode.collapse_ws { ' ' } else { '\n' });
        }
        let bytes = line.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            // Only ASCII whitespace separates words; splitting at a UTF-8 boundary is
            // therefore always safe.
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            if i > start {
                if !mode.collapse_ws {
                    out.push_str(&line[start..i]);
                } else if !out.is_empty() && !out.ends_with(' ') {
                    out.push(' ');
                }
                continue;
            }
            // One pass finds the word's end and whether it can hold anything volatile.
            let mut plain = true;
            while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                plain &= !(bytes[i].is_ascii_digit() || bytes[i] == b'/');
                i += 1;
            }
            let word = &line[start..i];
            if plain {
                // Fast path: nothing volatile can hide in a word without digits or '/'.
                prev_was_line_word = mode.output && word.eq_ignore_ascii_case("line");
                push_case(word, mode, out);
                continue;
            }
            if mode.output && prev_was_line_word && is_int(trim_punct(word).1) {
                out.push('#');
                prev_was_line_word = false;
                continue;
            }
            prev_was_line_word = false;
            // `word.split('=')` without a searcher per (short) word.
            let mut part_start = 0;
            for (j, b) in word.bytes().enumerate() {
                if b == b'=' {
                    push_word(&word[part_start..j], mode, out);
                    out.push('=');
                    part_start = j + 1;
                }
            }
            push_word(&word[part_start..], mode, out);
        }
    }
    if mode.collapse_ws {
        while out.ends_with(' ') {
            out.pop();
        }
    }
}

fn push_case(s: &str, mode: Mode, out: &mut String) {
    if !mode.lowercase {
        out.push_str(s);
    } else if s.is_ascii() {
        let start = out.len();
        out.push_str(s);
        out[start..].make_ascii_lowercase();
    } else {
        for c in s.chars() {
            out.extend(c.to_lowercase());
        }
    }
}

/// Strips `cat -n` / `nl` style prefixes: optional spaces, digits, then a tab or `|`.
fn strip_line_number(line: &str) -> &str {
    let t = line.trim_start();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return line;
    }
    match t.as_bytes().get(digits) {
        Some(b'\t') | Some(b'|') => &t[digits + 1..],
        _ => line,
    }
}

/// Splits surrounding punctuation off a word: (leading, core, trailing).
fn trim_punct(word: &str) -> (&str, &str, &str) {
    const LEAD: &[u8] = b"\"'([{<`";
    const TRAIL: &[u8] = b"\"')]}>,.;:`!?";
    // Byte scan: every punctuation mark is ASCII, so the cuts are char boundaries.
    let b = word.as_bytes();
    let start = b.iter().take_while(|c| LEAD.contains(c)).count();
    let trail = b[start..]
        .iter()
        .rev()
        .take_while(|c| TRAIL.contains(c))
        .count();
    let end = b.len() - trail;
    (&word[..start], &word[start..end], &word[end..])
}

fn push_word(word: &str, mode: Mode, out: &mut String) {
    let (lead, core, trail) = trim_punct(word);
    out.push_str(lead);
    match classify(core, mode.output) {
        Some(placeholder) => out.push_str(placeholder),
        None => match temp_path(core) {
            Some(p) => out.push_str(&p),
            None => push_case(core, mode, out),
        },
    }
    out.push_str(trail);
}

/// Returns the placeholder for a volatile token, if it is one.
fn classify(t: &str, mode_hex: bool) -> Option<&'static str> {
    // Every volatile shape below contains a digit: most words leave here.
    if t.len() < 4 || !t.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    // `mode_hex` is set for outputs (results), see `is_random_hex`.
    if is_uuid(t) {
        return Some("<uuid>");
    }
    if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X"))
        && h.len() >= 4
        && h.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Some("<addr>");
    }
    if is_prefixed_id(t) || (mode_hex && is_random_hex(t)) {
        return Some("<id>");
    }
    if is_clock(t) || is_datetime(t) {
        return Some("<ts>");
    }
    if is_epoch(t) {
        return Some("<epoch>");
    }
    if is_duration(t) {
        return Some("<dur>");
    }
    None
}

fn is_int(t: &str) -> bool {
    !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit())
}

fn is_uuid(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Commit shas, request ids, content hashes: 7+ hex chars mixing digits and letters.
/// Only erased in outputs: in arguments a sha names a specific commit.
fn is_random_hex(t: &str) -> bool {
    t.len() >= 7
        && t.bytes().all(|b| b.is_ascii_hexdigit())
        && t.bytes().any(|b| b.is_ascii_digit())
        && t.bytes().any(|b| b.is_ascii_alphabetic())
}

/// Provider-style ids such as `call_8fK2...`, `toolu_01AbC...`, `req_...`, `msg_...`.
fn is_prefixed_id(t: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "call_",
        "toolu_",
        "req_",
        "msg_",
        "chatcmpl-",
        "run_",
        "resp_",
    ];
    PREFIXES.iter().any(|p| {
        t.strip_prefix(p).is_some_and(|rest| {
            rest.len() >= 8
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && rest.bytes().any(|b| b.is_ascii_digit())
        })
    })
}

/// `hh:mm:ss` with optional fraction / zone. Plain `hh:mm` is kept: in support domains it
/// is data (a flight's departure), not a clock reading.
fn is_clock(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() >= 8
        && b[..2].iter().all(u8::is_ascii_digit)
        && b[2] == b':'
        && b[3..5].iter().all(u8::is_ascii_digit)
        && b[5] == b':'
        && b[6..8].iter().all(u8::is_ascii_digit)
}

/// A date immediately followed by a time (`2024-05-01T12:00:00Z`, `2024-05-01_12-00-00`).
/// Bare dates are kept for the same reason as `hh:mm`.
fn is_datetime(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() >= 16
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'-'
        && b[8..10].iter().all(u8::is_ascii_digit)
        && matches!(b[10], b'T' | b't' | b'_' | b' ')
        && b[11..13].iter().all(u8::is_ascii_digit)
}

/// Unix seconds or milliseconds from 2001 to 2286 (10 or 13 digits starting with 1).
fn is_epoch(t: &str) -> bool {
    (t.len() == 10 || t.len() == 13) && t.starts_with('1') && is_int(t)
}

/// `0.53s`, `12ms`, `1.2sec`: timings printed by test runners and build tools.
fn is_duration(t: &str) -> bool {
    let num_len = t
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    if num_len == 0 {
        return false;
    }
    let (num, unit) = t.split_at(num_len);
    let has_fraction = num.contains('.');
    match unit {
        "ms" | "µs" | "us" | "ns" => true,
        "s" | "sec" | "secs" => has_fraction,
        _ => false,
    }
}

/// Rewrites the random directory of a temp path (`/tmp/tmpk2j3h4/out.txt` →
/// `/tmp/<tmp>/out.txt`); a readable name such as `/tmp/out.txt` is kept.
fn temp_path(t: &str) -> Option<String> {
    if !t.contains('/') {
        return None;
    }
    const ROOTS: &[&str] = &[
        "/tmp/",
        "/var/tmp/",
        "/var/folders/",
        "/private/var/folders/",
    ];
    // Roots are tried at each `/` (a memchr scan) rather than searched for one by one:
    // this runs on every word with a slash in every tool output.
    for (pos, _) in t.match_indices('/') {
        let Some(root) = ROOTS.iter().find(|r| t[pos..].starts_with(*r)) else {
            continue;
        };
        let after = &t[pos + root.len()..];
        let comp_len = after.find('/').unwrap_or(after.len());
        let comp = &after[..comp_len];
        if looks_random(comp) || root.ends_with("folders/") {
            return Some(format!("{}{}<tmp>{}", &t[..pos], root, &after[comp_len..]));
        }
        return None;
    }
    None
}

fn looks_random(c: &str) -> bool {
    let digits = c.bytes().filter(u8::is_ascii_digit).count();
    let alpha = c.bytes().filter(u8::is_ascii_alphabetic).count();
    (c.starts_with("tmp") && c.len() > 3 && !c.contains('.'))
        || (c.len() >= 6 && digits >= 2 && alpha >= 2 && !c.contains('.'))
}
