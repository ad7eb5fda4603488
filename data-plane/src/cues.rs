//! Difficulty cues for the router, counted over the system prompt and the
//! last user message: code (fences and code-looking lines) and words that
//! ask for reasoning or engineering work. Counts only leave the sidecar,
//! never the text. One pass over at most [`MAX_SCAN`] bytes per text, no
//! allocation: well under a millisecond.

/// Most bytes scanned per text; a long paste says "code" early on.
pub const MAX_SCAN: usize = 64 * 1024;
/// Counts are capped: past this, more says nothing new.
const MAX_COUNT: u32 = 1000;

/// Words that ask for reasoning or engineering work (compared without
/// case; a hyphenated word counts as a whole).
const REASONING: &[&str] = &[
    "prove",
    "proof",
    "derive",
    "debug",
    "refactor",
    "optimize",
    "optimise",
    "architecture",
    "design",
    "analyze",
    "analyse",
    "implement",
    "algorithm",
    "complexity",
    "step-by-step",
    "tradeoff",
    "trade-off",
    "tradeoffs",
    "trade-offs",
    "concurrency",
    "deadlock",
    "migrate",
    "migration",
    "benchmark",
    "theorem",
    "rigorous",
    "failing",
    "stacktrace",
    "traceback",
];

/// Starts of lines that look like code.
const CODE_STARTS: &[&str] = &[
    "fn ",
    "pub fn",
    "def ",
    "class ",
    "import ",
    "from ",
    "#include",
    "function ",
    "const ",
    "let ",
    "var ",
    "return ",
    "impl ",
    "struct ",
    "use ",
    "package ",
    "select ",
    "func ",
];

/// The cue counts of a request.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Cues {
    pub code: u32,
    pub reasoning: u32,
}

impl Cues {
    /// Both counts, capped as [`Cues::scan`] caps them.
    pub fn plus(self, other: Cues) -> Cues {
        Cues {
            code: (self.code + other.code).min(MAX_COUNT),
            reasoning: (self.reasoning + other.reasoning).min(MAX_COUNT),
        }
    }

    /// Adds the cues found in `text` (its first [`MAX_SCAN`] bytes).
    pub fn scan(&mut self, text: &str) {
        let text = truncate(text, MAX_SCAN);
        let mut fences = 0u32;
        let mut code_lines = 0u32;
        for line in text.lines() {
            let t = line.trim();
            if t.starts_with("```") {
                fences += 1;
                continue;
            }
            if looks_like_code(t) {
                code_lines += 1;
            }
        }
        // A fenced block is two fences; an unclosed one still counts.
        self.code = (self.code + fences.div_ceil(2) + code_lines).min(MAX_COUNT);
        let words = text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .filter(|w| w.len() >= 4);
        for w in words {
            if REASONING.iter().any(|r| r.eq_ignore_ascii_case(w)) {
                self.reasoning = (self.reasoning + 1).min(MAX_COUNT);
            }
        }
    }
}

fn looks_like_code(t: &str) -> bool {
    if t.len() < 3 {
        return false;
    }
    let starts = CODE_STARTS
        .iter()
        .any(|s| t.len() >= s.len() && t.as_bytes()[..s.len()].eq_ignore_ascii_case(s.as_bytes()));
    // Prose rarely ends a line with `;` or `{`; code often does.
    (starts && (t.contains('(') || t.contains('=') || t.ends_with(':')))
        || t.ends_with(';')
        || t.ends_with('{')
}

/// `s` cut to at most `max` bytes at a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cues(text: &str) -> Cues {
        let mut c = Cues::default();
        c.scan(text);
        c
    }

    #[test]
    fn a_one_line_question_has_no_cues() {
        assert_eq!(cues("What is the capital of France?"), Cues::default());
    }

    #[test]
    fn code_and_engineering_words_are_counted() {
        let c = cues(
            "Refactor this and debug the failing test:\n```rust\nfn main() {\n    let x = 1;\n}\n```\n",
        );
        assert_eq!(c.reasoning, 3, "refactor, debug, failing");
        // One fenced block, `fn main() {`, `let x = 1;`.
        assert_eq!(c.code, 3);
    }

    #[test]
    fn scanning_is_bounded_and_cheap() {
        let big = "let x = compute(y);\n".repeat(50_000);
        let start = std::time::Instant::now();
        let c = cues(&big);
        assert!(c.code > 100 && c.code <= MAX_COUNT);
        assert!(start.elapsed() < std::time::Duration::from_millis(50));
        // A multi-byte character at the cut does not panic.
        let s = "é".repeat(MAX_SCAN);
        cues(&s);
    }
}
