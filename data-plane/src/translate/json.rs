//! Typed reads of caller JSON that name the offending field on failure.

use serde_json::{Map, Value};

use super::TranslateError;

/// Joins a parent path and a key the way error messages show it (`messages[2].content`).
pub(crate) fn field(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// Present-and-not-null value, so that `"x": null` reads like an absent field.
pub(crate) fn get<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

pub(crate) fn wrong_type(path: String, expected: &'static str) -> TranslateError {
    TranslateError::WrongType {
        field: path,
        expected,
    }
}

pub(crate) fn opt_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    parent: &str,
) -> Result<Option<&'a str>, TranslateError> {
    match get(obj, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(wrong_type(field(parent, key), "a string")),
    }
}

pub(crate) fn req_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    parent: &str,
) -> Result<&'a str, TranslateError> {
    opt_str(obj, key, parent)?.ok_or_else(|| TranslateError::Missing {
        field: field(parent, key),
    })
}

pub(crate) fn as_object(
    v: &Value,
    path: impl FnOnce() -> String,
) -> Result<&Map<String, Value>, TranslateError> {
    v.as_object().ok_or_else(|| wrong_type(path(), "an object"))
}

pub(crate) fn opt_array<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    parent: &str,
) -> Result<Option<&'a Vec<Value>>, TranslateError> {
    match get(obj, key) {
        None => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a)),
        Some(_) => Err(wrong_type(field(parent, key), "an array")),
    }
}

pub(crate) fn opt_number(
    obj: &Map<String, Value>,
    key: &str,
    parent: &str,
) -> Result<Option<f64>, TranslateError> {
    match get(obj, key) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| wrong_type(field(parent, key), "a number")),
    }
}

pub(crate) fn opt_bool(
    obj: &Map<String, Value>,
    key: &str,
    parent: &str,
) -> Result<Option<bool>, TranslateError> {
    match get(obj, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(wrong_type(field(parent, key), "a boolean")),
    }
}

/// Token limits: a positive integer that fits in `u32`.
pub(crate) fn opt_positive_u32(
    obj: &Map<String, Value>,
    key: &str,
    parent: &str,
) -> Result<Option<u32>, TranslateError> {
    match get(obj, key) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .filter(|n| *n > 0)
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| wrong_type(field(parent, key), "a positive integer")),
    }
}

/// Saturating read of a token counter from upstream JSON; absent or odd values count as 0.
pub(crate) fn count(v: Option<&Value>) -> u32 {
    v.and_then(Value::as_u64)
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
        .unwrap_or(0)
}
