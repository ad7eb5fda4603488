//! Token usage as both APIs report it.

use serde_json::Value;

/// Token usage of one request. `input_tokens` includes cached tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u32,
    pub output_tokens: u32,
    pub cached_input_tokens: u32,
    pub cache_creation_tokens: u32,
}

fn u32_at(v: &Value, key: &str) -> u32 {
    v.get(key)
        .and_then(Value::as_u64)
        .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX))
}

/// Reads an OpenAI `usage` object (of a response or a stream chunk).
pub fn usage_from_openai(usage: &Value) -> Usage {
    Usage {
        input_tokens: u32_at(usage, "prompt_tokens"),
        output_tokens: u32_at(usage, "completion_tokens"),
        cached_input_tokens: usage
            .get("prompt_tokens_details")
            .map_or(0, |d| u32_at(d, "cached_tokens")),
        cache_creation_tokens: 0,
    }
}

/// Reads an Anthropic `usage` object. Anthropic's `input_tokens` excludes
/// cache reads and writes; Keel's includes them.
pub fn usage_from_anthropic(usage: &Value) -> Usage {
    let read = u32_at(usage, "cache_read_input_tokens");
    let created = u32_at(usage, "cache_creation_input_tokens");
    Usage {
        input_tokens: u32_at(usage, "input_tokens")
            .saturating_add(read)
            .saturating_add(created),
        output_tokens: u32_at(usage, "output_tokens"),
        cached_input_tokens: read,
        cache_creation_tokens: created,
    }
}
