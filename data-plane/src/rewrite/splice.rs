//! The app's body for a provider of its own format, written from the app's
//! own bytes: only the top-level `model` (and, when Keel needs usage, the
//! `stream_options`) are replaced. The history is copied as it is, never
//! parsed again and re-serialized: that is most of a long agent history's
//! cost, and numbers, escapes and unknown fields reach the provider exactly
//! as the app wrote them.

use serde::Serialize;
use serde_json::{Value, json};

use crate::scan;

/// `raw` (a JSON object) with `model` as its model and, when
/// `include_usage`, `stream_options.include_usage` set; None if `raw` is not
/// a JSON object whose fields can all be copied (the caller then serializes
/// its parsed body).
pub fn with_model(raw: &[u8], model: &str, include_usage: bool) -> Option<Vec<u8>> {
    let top = scan::top_level(raw).ok()?;
    if !top.whole {
        return None;
    }
    let fields = top.fields.iter().map(|(k, v)| (k.as_str(), *v));
    write(fields, raw.len(), model, include_usage)
}

/// A JSON object of `fields` (key unescaped, value as written; about
/// `len` bytes in all) with `model` as its model and, when `include_usage`,
/// `stream_options.include_usage` set.
pub fn write<'a>(
    fields: impl Iterator<Item = (&'a str, &'a str)>,
    len: usize,
    model: &str,
    include_usage: bool,
) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(len + model.len() + 48);
    out.push(b'{');
    let mut model_written = false;
    let mut usage_written = !include_usage;
    for (key, value) in fields {
        match key {
            // A repeated key: the parsed body keeps one, so does this.
            "model" if model_written => continue,
            "model" => {
                field(&mut out, key, model);
                model_written = true;
            }
            "stream_options" if include_usage => {
                match serde_json::from_str::<Value>(value).ok()? {
                    Value::Object(mut o) => {
                        o.insert("include_usage".into(), Value::Bool(true));
                        field(&mut out, key, &Value::Object(o));
                    }
                    // Not an object: left as the app sent it, as the parsed
                    // body's rewrite does.
                    _ => raw_field(&mut out, key, value),
                }
                usage_written = true;
            }
            _ => raw_field(&mut out, key, value),
        }
    }
    if !model_written {
        field(&mut out, "model", model);
    }
    if !usage_written {
        field(&mut out, "stream_options", &json!({"include_usage": true}));
    }
    out.push(b'}');
    Some(out)
}

fn key(out: &mut Vec<u8>, key: &str) {
    if out.len() > 1 {
        out.push(b',');
    }
    let _ = serde_json::to_writer(&mut *out, key);
    out.push(b':');
}

fn field(out: &mut Vec<u8>, name: &str, value: &(impl Serialize + ?Sized)) {
    key(out, name);
    // A string or a JSON value always serializes.
    let _ = serde_json::to_writer(&mut *out, value);
}

fn raw_field(out: &mut Vec<u8>, name: &str, value: &str) {
    key(out, name);
    out.extend_from_slice(value.as_bytes());
}
