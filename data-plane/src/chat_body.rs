//! A chat request's body, read in one pass ([`crate::scan`]): the spans of
//! its top-level fields and of each message, no JSON tree. The steps before
//! `Route` read it through [`ChatView`] and the per-message facts
//! (facts.rs); a message is parsed only when it is new to the facts cache,
//! is in the loop detector's window, or opens the conversation. The whole
//! tree is built only when a step needs it (a nudge, a translation); until
//! it is changed, the app's own bytes go upstream with the model replaced.

use std::{borrow::Cow, ops::Range};

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::{
    error::ApiError,
    rewrite::splice,
    scan::{self, Messages},
};

/// Read access to a chat body, scanned or parsed.
pub trait ChatView {
    /// The top-level field `name`, parsed.
    fn value(&self, name: &str) -> Option<Cow<'_, Value>>;
    /// Messages, when `messages` is an array.
    fn message_count(&self) -> usize;
    /// Message `i`, parsed.
    fn message(&self, i: usize) -> Option<Cow<'_, Value>>;
}

impl ChatView for Map<String, Value> {
    fn value(&self, name: &str) -> Option<Cow<'_, Value>> {
        self.get(name).map(Cow::Borrowed)
    }
    fn message_count(&self) -> usize {
        self.get("messages")
            .and_then(Value::as_array)
            .map_or(0, Vec::len)
    }
    fn message(&self, i: usize) -> Option<Cow<'_, Value>> {
        self.get("messages")?.as_array()?.get(i).map(Cow::Borrowed)
    }
}

/// See the module docs.
pub struct ChatBody {
    raw: Bytes,
    /// Top-level fields in order: key (unescaped) and its value's span.
    fields: Vec<(String, Range<usize>)>,
    /// Each message's span, when `messages` is an array.
    messages: Messages<Range<usize>>,
    /// Every field's text is known (see [`scan::TopLevel::whole`]).
    whole: bool,
    tree: Option<Map<String, Value>>,
    /// The tree was changed: the app's bytes no longer say what goes upstream.
    edited: bool,
}

impl ChatBody {
    /// Scans `raw`, which must be one JSON object.
    pub fn scan(raw: Bytes) -> Result<ChatBody, serde_json::Error> {
        let top = scan::top_level(&raw)?;
        let span = |text: &str| {
            let start = scan::offset(&raw, text);
            start..start + text.len()
        };
        let fields = top.fields.into_iter().map(|(k, v)| (k, span(v))).collect();
        let messages = top.messages.map(span);
        let whole = top.whole;
        Ok(ChatBody {
            fields,
            messages,
            whole,
            raw,
            tree: None,
            edited: false,
        })
    }

    fn text(&self, span: &Range<usize>) -> &str {
        // Spans come from the scan of these bytes, which checked UTF-8.
        std::str::from_utf8(&self.raw[span.clone()]).unwrap_or("null")
    }

    /// The text of top-level field `name` as the app wrote it (the last
    /// one, as a parse keeps); None once the body was changed.
    pub fn field_text(&self, name: &str) -> Option<&str> {
        if self.edited {
            return None;
        }
        let (_, span) = self.fields.iter().rev().find(|(k, _)| k == name)?;
        Some(self.text(span))
    }

    /// What `messages` is, as scanned.
    pub fn messages(&self) -> &Messages<Range<usize>> {
        &self.messages
    }

    fn message_spans(&self) -> &[Range<usize>] {
        match &self.messages {
            Messages::Array(spans) => spans,
            Messages::Absent | Messages::Other => &[],
        }
    }

    /// The text of each message as the app wrote it.
    pub fn message_texts(&self) -> impl ExactSizeIterator<Item = &str> {
        self.message_spans().iter().map(|span| self.text(span))
    }

    /// The index of the first of the last `n` messages, and their texts as
    /// the app wrote them (the loop detector's window and what it looks
    /// back at).
    pub fn last_message_texts(&self, n: usize) -> (usize, Vec<&str>) {
        let offset = self.message_spans().len().saturating_sub(n);
        (offset, self.message_texts().skip(offset).collect())
    }

    /// The parsed body, built on first use.
    pub fn tree(&mut self) -> Result<&Map<String, Value>, ApiError> {
        Ok(self.built()?)
    }

    /// The parsed body to change; from now on it, not the app's bytes, is
    /// what goes upstream.
    pub fn tree_mut(&mut self) -> Result<&mut Map<String, Value>, ApiError> {
        self.edited = true;
        self.built()
    }

    fn built(&mut self) -> Result<&mut Map<String, Value>, ApiError> {
        if self.tree.is_none() {
            let tree = serde_json::from_slice(&self.raw).map_err(|e| {
                ApiError::BadRequest(format!("request body is not a JSON object: {e}"))
            })?;
            self.tree = Some(tree);
        }
        Ok(self.tree.get_or_insert_default())
    }

    /// The app's bytes with `model` as the model (and usage asked for when
    /// `include_usage`), while the body is unchanged; see rewrite/splice.rs.
    pub fn spliced(&self, model: &str, include_usage: bool) -> Option<Vec<u8>> {
        if self.edited || !self.whole {
            return None;
        }
        let fields = self.fields.iter().map(|(k, s)| (k.as_str(), self.text(s)));
        splice::write(fields, self.raw.len(), model, include_usage)
    }
}

impl ChatView for ChatBody {
    fn value(&self, name: &str) -> Option<Cow<'_, Value>> {
        if let Some(tree) = &self.tree {
            return tree.value(name);
        }
        let text = self.field_text(name)?;
        serde_json::from_str(text).ok().map(Cow::Owned)
    }
    fn message_count(&self) -> usize {
        match &self.tree {
            Some(tree) => tree.message_count(),
            None => self.message_spans().len(),
        }
    }
    fn message(&self, i: usize) -> Option<Cow<'_, Value>> {
        if let Some(tree) = &self.tree {
            return tree.message(i);
        }
        let span = self.message_spans().get(i)?;
        serde_json::from_str(self.text(span)).ok().map(Cow::Owned)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body(raw: &str) -> ChatBody {
        ChatBody::scan(Bytes::from(raw.to_owned())).expect("a JSON object")
    }

    #[test]
    fn reads_fields_and_messages_without_the_tree() {
        let b = body(
            r#"{"model":"a","stream":true,"messages":[{"role":"user","content":"hi"},
            {"role":"assistant","content":"yo"}],"model":"b"}"#,
        );
        assert_eq!(
            b.value("model").as_deref(),
            Some(&json!("b")),
            "the last one, as a parse"
        );
        assert_eq!(b.value("stream").as_deref(), Some(&json!(true)));
        assert_eq!(b.value("absent"), None);
        assert_eq!(b.message_count(), 2);
        assert_eq!(
            b.message(1).as_deref(),
            Some(&json!({"role": "assistant", "content": "yo"}))
        );
        assert_eq!(b.message(2), None);
        assert_eq!(b.message_texts().len(), 2);
        assert!(b.tree.is_none(), "nothing built the tree");
    }

    #[test]
    fn a_changed_tree_is_what_is_read_and_sent() {
        let mut b = body(r#"{"model":"a","messages":[{"role":"user","content":"hi"}]}"#);
        let spliced = b.spliced("up", false).expect("unchanged");
        assert_eq!(
            std::str::from_utf8(&spliced).unwrap(),
            r#"{"model":"up","messages":[{"role":"user","content":"hi"}]}"#
        );
        // Reading the tree keeps the app's bytes usable.
        assert_eq!(b.tree().unwrap().len(), 2);
        assert!(b.spliced("up", false).is_some());
        b.tree_mut()
            .unwrap()
            .get_mut("messages")
            .and_then(Value::as_array_mut)
            .unwrap()
            .push(json!({"role": "system", "content": "nudge"}));
        assert!(b.spliced("up", false).is_none(), "the bytes are stale");
        assert_eq!(b.field_text("model"), None);
        assert_eq!(b.message_count(), 2);
        assert_eq!(b.message(1).unwrap()["content"], json!("nudge"));
    }

    #[test]
    fn a_body_whose_messages_are_no_array_is_not_spliced() {
        let b = body(r#"{"model":"a","messages":"hi"}"#);
        assert_eq!(b.messages(), &Messages::Other);
        assert_eq!(b.message_count(), 0);
        assert!(b.spliced("up", false).is_none());
    }
}
