//! One pass over a JSON object's bytes that keeps its top-level fields and,
//! for `messages`, each element, as slices of those bytes: nothing is parsed
//! into a tree and no string is copied. What a chat request is read from
//! (chat_body.rs) and what a body for the app's own API is written from
//! (rewrite/splice.rs).

use std::fmt;

use serde::{
    Deserializer,
    de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor},
};
use serde_json::value::RawValue;

/// A JSON object's top-level fields in order (key unescaped, value as
/// written), and the elements of its last `messages` field when that is an
/// array.
pub struct TopLevel<'a> {
    pub fields: Vec<(String, &'a str)>,
    pub messages: Messages<&'a str>,
    /// Every field's text is known: false when a `messages` field is no
    /// array or an empty one (its text is not kept; such a chat request is
    /// refused, and other bodies are then written from their parse).
    pub whole: bool,
}

/// A body's `messages` field.
#[derive(Debug, PartialEq, Eq)]
pub enum Messages<T> {
    Absent,
    /// An array: its elements.
    Array(Vec<T>),
    /// Any other value.
    Other,
}

impl<T> Messages<T> {
    /// The same shape with each element mapped.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Messages<U> {
        match self {
            Messages::Absent => Messages::Absent,
            Messages::Array(items) => Messages::Array(items.into_iter().map(f).collect()),
            Messages::Other => Messages::Other,
        }
    }
}

/// Scans `raw`, which must be one JSON object.
pub fn top_level(raw: &[u8]) -> Result<TopLevel<'_>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(raw);
    let top = de.deserialize_map(Top { raw })?;
    de.end()?;
    Ok(top)
}

struct Top<'a> {
    raw: &'a [u8],
}

impl<'de> Visitor<'de> for Top<'de> {
    type Value = TopLevel<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut top = TopLevel {
            fields: Vec::with_capacity(map.size_hint().unwrap_or(12)),
            messages: Messages::Absent,
            whole: true,
        };
        while let Some(key) = map.next_key::<String>()? {
            if key != "messages" {
                let value: &RawValue = map.next_value()?;
                top.fields.push((key, value.get()));
                continue;
            }
            let elements = map.next_value_seed(Elements)?;
            // The array's own text runs from the `[` before its first element
            // to the `]` after its last; an empty or other value is not kept
            // whole (the request is refused).
            let whole = elements.as_deref().and_then(|e| array_text(self.raw, e));
            top.messages = elements.map_or(Messages::Other, Messages::Array);
            match whole {
                Some(text) => top.fields.push((key, text)),
                None => top.whole = false,
            }
        }
        Ok(top)
    }
}

/// The elements of an array, or None for any other value (skipped).
struct Elements;

impl<'de> DeserializeSeed<'de> for Elements {
    type Value = Option<Vec<&'de str>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Elements {
    type Value = Option<Vec<&'de str>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(16));
        while let Some(e) = seq.next_element::<&RawValue>()? {
            out.push(e.get());
        }
        Ok(Some(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// Where `part` (a slice of `raw`) starts in `raw`.
pub fn offset(raw: &[u8], part: &str) -> usize {
    part.as_ptr() as usize - raw.as_ptr() as usize
}

/// The text of the array whose elements are `elements`, all slices of `raw`.
fn array_text<'a>(raw: &'a [u8], elements: &[&str]) -> Option<&'a str> {
    let (first, last) = (elements.first()?, elements.last()?);
    let start = offset(raw, first);
    let end = offset(raw, last) + last.len();
    let is_space = |b: &u8| matches!(b, b' ' | b'\n' | b'\r' | b'\t');
    let open = raw[..start].iter().rposition(|b| !is_space(b))?;
    let close = end + raw[end..].iter().position(|b| !is_space(b))?;
    if raw[open] != b'[' || raw[close] != b']' {
        return None;
    }
    std::str::from_utf8(&raw[open..=close]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_messages_are_slices_of_the_bytes() {
        let raw = br#"{"model" : "m", "a\u0062c":{"x":[1,2]},
            "messages":[ {"role":"user","content":"hi"} ,
                {"role":"assistant","content":"]["}
            ] , "n":1.50}"#;
        let top = top_level(raw).unwrap();
        let keys: Vec<&str> = top.fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["model", "abc", "messages", "n"]);
        assert_eq!(top.fields[0].1, r#""m""#);
        assert_eq!(top.fields[1].1, r#"{"x":[1,2]}"#);
        assert_eq!(top.fields[3].1, "1.50");
        let Messages::Array(messages) = top.messages else {
            panic!("an array");
        };
        assert_eq!(
            messages,
            [
                r#"{"role":"user","content":"hi"}"#,
                r#"{"role":"assistant","content":"]["}"#
            ]
        );
        assert!(
            top.fields[2].1.starts_with("[ {") && top.fields[2].1.ends_with("}\n            ]")
        );
        let whole: serde_json::Value = serde_json::from_str(top.fields[2].1).unwrap();
        assert_eq!(whole.as_array().unwrap().len(), 2);
    }

    #[test]
    fn other_messages_values_and_bad_json_are_told_apart() {
        for raw in [
            r#"{"messages":{"a":[1]}}"#,
            r#"{"messages":"x"}"#,
            r#"{"messages":null}"#,
        ] {
            let top = top_level(raw.as_bytes()).unwrap();
            assert!(top.messages == Messages::Other && !top.whole, "{raw}");
        }
        let empty = top_level(br#"{"messages":[ ]}"#).unwrap();
        assert_eq!(empty.messages, Messages::Array(vec![]));
        assert!(!empty.whole);
        let none = top_level(br#"{"input":[]}"#).unwrap();
        assert!(none.whole && none.messages == Messages::Absent);
        for raw in [r#"{"messages":[1,]}"#, "[1]", r#"{"a":1} x"#, r#"{"a":"#] {
            assert!(top_level(raw.as_bytes()).is_err(), "{raw}");
        }
    }
}
