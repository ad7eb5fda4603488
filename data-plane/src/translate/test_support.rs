//! Test helpers: fixture loading and a small SSE parser to read translator output back.

use serde_json::Value;

use super::{StreamTranslator, TranslateError};

/// Fixture root; the one line to change if the module moves to another crate.
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/support/fixtures");

pub(crate) fn fixture(rel: &str) -> String {
    let path = format!("{FIXTURES}/{rel}");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

pub(crate) fn fixture_json(rel: &str) -> Value {
    serde_json::from_str(&fixture(rel)).unwrap_or_else(|e| panic!("parsing {rel}: {e}"))
}

/// One SSE frame: the `event:` field ("" if none) and the joined `data:` lines.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Frame {
    pub event: String,
    pub data: String,
}

impl Frame {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("frame {self:?}: {e}"))
    }
}

/// Parses SSE text strictly enough to catch framing bugs: every frame must end with a blank
/// line and every line must be `event:` or `data:`.
pub(crate) fn parse_sse(text: &str) -> Vec<Frame> {
    assert!(
        text.is_empty() || text.ends_with("\n\n"),
        "output does not end with a blank line: {text:?}"
    );
    let mut frames = Vec::new();
    for block in text.split("\n\n").filter(|b| !b.is_empty()) {
        let mut frame = Frame {
            event: String::new(),
            data: String::new(),
        };
        let mut data_lines = Vec::new();
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event: ") {
                frame.event = v.to_owned();
            } else if let Some(v) = line.strip_prefix("data: ") {
                data_lines.push(v);
            } else {
                panic!("unexpected SSE line {line:?}");
            }
        }
        frame.data = data_lines.join("\n");
        frames.push(frame);
    }
    frames
}

/// Feeds every frame of `sse` through `t` as the sidecar would, then `finish`es, and
/// parses what the caller would receive.
pub(crate) fn replay(t: &mut dyn StreamTranslator, sse: &str) -> Vec<Frame> {
    let mut out = Vec::new();
    for f in parse_sse(sse) {
        t.push(&f.event, &f.data, &mut out);
    }
    t.finish(&mut out);
    parse_sse(&String::from_utf8(out).expect("translator output is UTF-8"))
}

/// Output of a translator as frames, for tests that push events by hand.
pub(crate) fn frames(out: &[u8]) -> Vec<Frame> {
    parse_sse(std::str::from_utf8(out).expect("translator output is UTF-8"))
}

/// Asserts that translation failed on `field` and that the message names it.
pub(crate) fn assert_names_field<T: std::fmt::Debug>(
    result: Result<T, TranslateError>,
    field: &str,
) {
    match result {
        Err(e) => {
            assert_eq!(e.field(), field, "{e}");
            assert!(
                e.to_string().contains(field),
                "message names the field: {e}"
            );
        }
        Ok(out) => panic!("expected an error on {field}, got {out:?}"),
    }
}
