//! Canonical form of tool-call arguments: keys sorted, volatile keys dropped, string
//! values normalized. Two calls that differ only in key order or in a request id hash the
//! same; two calls on different records do not.

use super::normalize::{self, ARGS};
use serde_json::Value;

/// Keys whose values are per-call noise. Matched case-insensitively on the whole key.
const VOLATILE_KEYS: &[&str] = &[
    "timestamp",
    "ts",
    "nonce",
    "request_id",
    "requestid",
    "trace_id",
    "span_id",
    "idempotency_key",
    "tool_call_id",
    "call_id",
    "cache_buster",
    "client_time",
];

/// Maximum nesting followed; deeper values are hashed as a marker so hostile input cannot
/// blow the stack.
const MAX_DEPTH: usize = 32;

/// Appends the canonical form of `v` to `out`.
pub(crate) fn canonical_into(v: &Value, out: &mut String) {
    write(v, out, 0);
}

fn write(v: &Value, out: &mut String, depth: usize) {
    if depth > MAX_DEPTH {
        out.push_str("<deep>");
        return;
    }
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => {
            out.push('"');
            normalize::normalize_into(s, ARGS, out);
            out.push('"');
        }
        Value::Array(a) => {
            out.push('[');
            for x in a {
                write(x, out, depth + 1);
                out.push(',');
            }
            out.push(']');
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m
                .keys()
                .filter(|k| !VOLATILE_KEYS.iter().any(|v| k.eq_ignore_ascii_case(v)))
                .collect();
            keys.sort_unstable();
            out.push('{');
            for k in keys {
                out.push_str(k);
                out.push(':');
                if let Some(x) = m.get(k) {
                    write(x, out, depth + 1);
                }
                out.push(',');
            }
            out.push('}');
        }
    }
}

/// Canonical form of OpenAI's `arguments`, which is a JSON *string*: parsed when it is
/// valid JSON (so key order does not matter), otherwise normalized as plain text.
pub(crate) fn canonical_arguments(raw: &str, out: &mut String) {
    match serde_json::from_str::<Value>(raw) {
        Ok(v) => canonical_into(&v, out),
        Err(_) => normalize::normalize_into(raw.trim(), ARGS, out),
    }
}
