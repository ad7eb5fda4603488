//! Classifies a tool result or environment reply: did it fail, and what is the error's
//! signature (the line a human would quote)?
//!
//! The heuristics are anchored at line starts on purpose: a file that merely *contains*
//! the word "error" (source code, docs) must not count as a failure.

use super::normalize::CAP;

/// What a result says about its own success.
pub(crate) struct Outcome<'a> {
    /// The result reports a failure.
    pub is_error: bool,
    /// The line that identifies the failure, if one was found.
    pub error_line: Option<&'a str>,
}

/// Classifies `content`. `flagged` is an explicit error flag from the protocol
/// (Anthropic `is_error`), which wins over heuristics.
pub(crate) fn classify(content: &str, flagged: bool) -> Outcome<'_> {
    let rc = return_code(content);
    let line = error_line(content);
    let is_error = match rc {
        // An explicit exit status is authoritative: tools print warnings on success.
        Some(code) => code != 0 || flagged,
        None => flagged || line.is_some(),
    };
    let error_line = if is_error {
        line.or_else(|| first_output_line(content))
    } else {
        None
    };
    Outcome {
        is_error,
        error_line,
    }
}

/// Exit status reported in the text: mini-swe-agent's `<returncode>N</returncode>`, or
/// `exit code: N` / `exit status N` / `Exit code N` on a line of its own.
fn return_code(content: &str) -> Option<i64> {
    if let Some(i) = content.find("<returncode>") {
        let rest = &content[i + "<returncode>".len()..];
        let end = rest.find('<').unwrap_or(rest.len());
        return rest[..end].trim().parse().ok();
    }
    for line in head_tail_lines(content) {
        let l = line.trim();
        for p in [
            "exit code:",
            "exit code",
            "exit status:",
            "exit status",
            "returncode:",
        ] {
            if starts_with_ci(l, p)
                && let Ok(n) = l[p.len()..]
                    .trim()
                    .trim_end_matches(['.', ')'])
                    .parse::<i64>()
            {
                return Some(n);
            }
        }
    }
    None
}

/// Lines from the first and last `CAP` bytes only: bounded cost on huge outputs.
fn head_tail_lines(content: &str) -> impl Iterator<Item = &str> {
    let (head, tail) = if content.len() > 2 * CAP {
        let mut h = CAP;
        while !content.is_char_boundary(h) {
            h -= 1;
        }
        let mut t = content.len() - CAP;
        while !content.is_char_boundary(t) {
            t += 1;
        }
        (&content[..h], &content[t..])
    } else {
        (content, "")
    };
    head.lines().chain(tail.lines())
}

/// The most telling error line: the last `SomethingError: msg` of a traceback, else the
/// first line that looks like an error report.
fn error_line(content: &str) -> Option<&str> {
    let mut first: Option<&str> = None;
    let mut in_traceback = false;
    let mut traceback_last: Option<&str> = None;
    for line in head_tail_lines(content) {
        let t = line.trim();
        if t.starts_with("Traceback (most recent call last)") {
            in_traceback = true;
            continue;
        }
        if in_traceback && has_error_word(t) && !line.starts_with(' ') {
            traceback_last = Some(t);
        }
        if first.is_none() && looks_like_error(t) {
            first = Some(t);
        }
    }
    traceback_last.or(first)
}

fn starts_with_ci(t: &str, p: &str) -> bool {
    t.len() >= p.len() && t.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes())
}

fn looks_like_error(t: &str) -> bool {
    if t.is_empty() {
        return false;
    }
    starts_with_ci(t, "error:")
        || starts_with_ci(t, "error[")
        || starts_with_ci(t, "error -")
        || t.starts_with("ERROR")
        || t.starts_with("FAILED ")
        || starts_with_ci(t, "fatal:")
        || t.starts_with("panic:")
        || t.starts_with("Exception")
        || (t.starts_with("thread '") && t.contains("panicked at"))
        || t.ends_with(": command not found")
        || t.ends_with(" not found")
        || is_shell_diagnostic(t)
        || t.ends_with("No such file or directory")
        || t.ends_with("Permission denied")
        || (t.starts_with("Usage:") && t.len() < 200)
        || has_error_word(t)
}

/// The shell itself complaining about the command line: `bash: line 2: unexpected EOF
/// while looking for matching`, `/bin/sh: 1: Syntax error: ...`.
fn is_shell_diagnostic(t: &str) -> bool {
    ["bash: ", "/bin/bash: ", "sh: ", "/bin/sh: ", "zsh: "]
        .iter()
        .any(|p| t.starts_with(p))
}

/// `ValueError: ...`, `E999 IndentationError: ...`, `java.io.IOException: ...` within the
/// first few words of the line.
fn has_error_word(t: &str) -> bool {
    // Runs on every line of every tool output: a memchr for the `E` both words contain
    // rejects most lines, then one pass over the first three words.
    if !t.as_bytes().contains(&b'E') {
        return false;
    }
    let (mut error_word, mut colon_word) = (false, false);
    for w in t.split_ascii_whitespace().take(3) {
        colon_word |= w.ends_with(':');
        let w = w.trim_end_matches(':');
        error_word |= w.len() > 5
            && (w.ends_with("Error") || w.ends_with("Exception"))
            && w.as_bytes()[0].is_ascii_alphabetic()
            && !w.contains('(');
    }
    error_word && colon_word
}

/// Fallback signature when the exit status says "failed" but no line looks like an error.
fn first_output_line(content: &str) -> Option<&str> {
    content
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('<'))
}
