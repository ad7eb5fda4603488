//! Token usage in a provider-neutral form and its two wire shapes.

use serde_json::{Value, json};

use super::json::count;

/// Token counts for one request, whichever API reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// All prompt tokens, including cache reads and cache writes.
    pub input_tokens: u32,
    /// Generated tokens.
    pub output_tokens: u32,
    /// Prompt tokens served from the cache (subset of `input_tokens`).
    pub cached_input_tokens: u32,
    /// Prompt tokens written to the cache (subset of `input_tokens`; Anthropic only).
    pub cache_creation_tokens: u32,
}

impl Usage {
    /// OpenAI `usage` object.
    pub fn to_openai_json(&self) -> Value {
        json!({
            "prompt_tokens": self.input_tokens,
            "completion_tokens": self.output_tokens,
            "total_tokens": self.input_tokens.saturating_add(self.output_tokens),
            "prompt_tokens_details": {"cached_tokens": self.cached_input_tokens},
        })
    }

    /// Anthropic `usage` object; `input_tokens` there excludes cache reads and writes.
    pub fn to_anthropic_json(&self) -> Value {
        let uncached = self
            .input_tokens
            .saturating_sub(self.cached_input_tokens)
            .saturating_sub(self.cache_creation_tokens);
        json!({
            "input_tokens": uncached,
            "cache_creation_input_tokens": self.cache_creation_tokens,
            "cache_read_input_tokens": self.cached_input_tokens,
            "output_tokens": self.output_tokens,
        })
    }
}

/// The usage object inside `v`: `v.usage`, `v.message.usage` (message_start) or `v` itself.
fn usage_object<'a>(v: &'a Value, marker: &str) -> Option<&'a Value> {
    if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
        return Some(u);
    }
    if let Some(u) = v.pointer("/message/usage").filter(|u| u.is_object()) {
        return Some(u);
    }
    v.get(marker).map(|_| v)
}

/// Reads `usage` from an OpenAI response or stream chunk (or a bare usage object).
pub fn usage_from_openai(v: &Value) -> Usage {
    let Some(u) = usage_object(v, "prompt_tokens") else {
        return Usage::default();
    };
    Usage {
        input_tokens: count(u.get("prompt_tokens")),
        output_tokens: count(u.get("completion_tokens")),
        cached_input_tokens: count(u.pointer("/prompt_tokens_details/cached_tokens")),
        cache_creation_tokens: 0,
    }
}

/// Reads `usage` from an Anthropic message, `message_start`/`message_delta` event, or a bare
/// usage object. Cache reads and writes are folded into `input_tokens`.
pub fn usage_from_anthropic(v: &Value) -> Usage {
    let mut acc = AnthropicCounts::default();
    if let Some(u) = usage_object(v, "input_tokens").or_else(|| usage_object(v, "output_tokens")) {
        acc.merge(u);
    }
    acc.to_usage()
}

/// Anthropic counters as reported, merged across stream events: `message_start` carries the
/// prompt side and `message_delta` the cumulative output (and sometimes the prompt again).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AnthropicCounts {
    input: u32,
    output: u32,
    cache_read: u32,
    cache_creation: u32,
}

impl AnthropicCounts {
    /// Overwrites each counter present in `u`; absent ones keep their earlier value.
    pub(crate) fn merge(&mut self, u: &Value) {
        let slots = [
            ("input_tokens", &mut self.input),
            ("output_tokens", &mut self.output),
            ("cache_read_input_tokens", &mut self.cache_read),
            ("cache_creation_input_tokens", &mut self.cache_creation),
        ];
        for (key, slot) in slots {
            if let Some(v) = u.get(key).filter(|v| !v.is_null()) {
                *slot = count(Some(v));
            }
        }
    }

    pub(crate) fn to_usage(self) -> Usage {
        Usage {
            input_tokens: self
                .input
                .saturating_add(self.cache_read)
                .saturating_add(self.cache_creation),
            output_tokens: self.output,
            cached_input_tokens: self.cache_read,
            cache_creation_tokens: self.cache_creation,
        }
    }
}

#[cfg(test)]
mod tests;
