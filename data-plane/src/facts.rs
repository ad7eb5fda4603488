//! What the routing features, the checks and the run of a chat request need
//! from each part of its body (a message, the system prompt, the tools
//! declared), as a few numbers. A part's facts depend on its bytes alone, so
//! they are kept in a cache keyed by those bytes: on each turn of a long agent
//! history only the messages it appended are parsed (chat_body.rs).

use keel::gencache::GenerationCache;
use serde_json::Value;
use xxhash_rust::xxh3::Xxh3;

use crate::cues::Cues;

/// Which part of a chat body a value is: it decides what is read from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Message,
    /// The top-level `system` (Anthropic).
    System,
    /// The top-level `tools`.
    Tools,
}

/// A message's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
    Other,
}

/// What is read from one part; see the module docs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// A message's role, when it has one that is a string.
    pub role: Option<Role>,
    /// Bytes of string values (prompt text, tool arguments and results).
    pub chars: u64,
    pub images: bool,
    /// Tool calls or tool results in it.
    pub tool_traffic: bool,
    /// A message answering tool calls (OpenAI `role: tool`, Anthropic
    /// `tool_result` blocks).
    pub tool_result: bool,
    /// Cues of the text of the system prompt, or of a system, developer or
    /// user message (not a tool result).
    pub cues: Cues,
    /// Tools declared (`Part::Tools`).
    pub items: u32,
    /// What a message says, cache markers aside (identity/runs.rs).
    pub hash: u128,
}

impl Facts {
    /// The facts of `v` as `part`.
    pub fn of(part: Part, v: &Value) -> Facts {
        let mut facts = Facts::default();
        match part {
            Part::Message => {
                walk(v, &mut facts);
                facts.role = v.get("role").and_then(Value::as_str).map(role);
                facts.tool_result = is_tool_result(v);
                let wants_cues = match facts.role {
                    Some(Role::System | Role::Developer) => true,
                    Some(Role::User) => !facts.tool_result,
                    _ => false,
                };
                if wants_cues && let Some(content) = v.get("content") {
                    scan_text(content, &mut facts.cues);
                }
                facts.hash = crate::identity::runs::message_hash(v);
            }
            Part::System => {
                walk(v, &mut facts);
                scan_text(v, &mut facts.cues);
            }
            Part::Tools => {
                if let Some(tools) = v.as_array() {
                    tools.iter().for_each(|t| walk(t, &mut facts));
                    facts.items = u32::try_from(tools.len()).unwrap_or(u32::MAX);
                }
            }
        }
        facts
    }
}

fn role(s: &str) -> Role {
    match s {
        "system" => Role::System,
        "developer" => Role::Developer,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" => Role::Tool,
        _ => Role::Other,
    }
}

/// The text of a string or of `text` blocks.
fn scan_text(v: &Value, cues: &mut Cues) {
    match v {
        Value::String(s) => cues.scan(s),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .for_each(|t| cues.scan(t)),
        _ => {}
    }
}

/// A tool's answer to the model: OpenAI `role: tool`, or an Anthropic user
/// message carrying `tool_result` blocks.
fn is_tool_result(m: &Value) -> bool {
    match m.get("role").and_then(Value::as_str) {
        Some("tool") => true,
        Some("user") => m
            .get("content")
            .and_then(Value::as_array)
            .is_some_and(|blocks| {
                blocks
                    .iter()
                    .any(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
            }),
        _ => false,
    }
}

/// Counts string bytes and spots images and tool traffic in one pass.
fn walk(v: &Value, facts: &mut Facts) {
    match v {
        Value::String(s) => facts.chars += s.len() as u64,
        Value::Array(a) => a.iter().for_each(|x| walk(x, facts)),
        Value::Object(o) => {
            match o.get("type").and_then(Value::as_str) {
                Some("image_url" | "image") => {
                    facts.images = true;
                    // Base64 image data is not prompt text.
                    return;
                }
                Some("tool_use" | "tool_result") => facts.tool_traffic = true,
                _ => {}
            }
            if o.contains_key("tool_calls") || o.get("role").and_then(Value::as_str) == Some("tool")
            {
                facts.tool_traffic = true;
            }
            o.values().for_each(|x| walk(x, facts));
        }
        _ => {}
    }
}

/// Facts of the parts seen on earlier requests, keyed by their bytes;
/// bounded ([`FactsCache::DEFAULT_CAPACITY`] entries of ~64 bytes).
pub struct FactsCache {
    entries: GenerationCache<Facts>,
}

impl Default for FactsCache {
    fn default() -> Self {
        FactsCache::new(FactsCache::DEFAULT_CAPACITY)
    }
}

impl FactsCache {
    /// 64k parts: the histories of a few thousand conversations at once.
    pub const DEFAULT_CAPACITY: usize = 64 * 1024;

    pub fn new(capacity: usize) -> Self {
        FactsCache {
            entries: GenerationCache::new(capacity),
        }
    }

    /// The facts of `raw`, a JSON text already checked, as `part`: from the
    /// cache, else parsed and remembered.
    pub fn facts(&self, part: Part, raw: &str) -> Facts {
        let mut hasher = Xxh3::new();
        hasher.update(&[part as u8]);
        hasher.update(raw.as_bytes());
        let key = hasher.digest128();
        if let Some(hit) = self.entries.get(key, |f| *f) {
            return hit;
        }
        let facts = serde_json::from_str::<Value>(raw)
            .map(|v| Facts::of(part, &v))
            .unwrap_or_default();
        self.entries.insert(key, facts);
        facts
    }

    /// Parts held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_part_is_parsed_once_and_its_facts_come_from_its_bytes() {
        let cache = FactsCache::new(1024);
        let msg = r#"{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":"ok"}]}"#;
        let first = cache.facts(Part::Message, msg);
        assert_eq!(
            first,
            Facts::of(Part::Message, &serde_json::from_str(msg).unwrap())
        );
        assert_eq!(first.role, Some(Role::User));
        assert!(first.tool_result && first.tool_traffic);
        assert_eq!(first.cues, Cues::default(), "a tool result is not the task");
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.facts(Part::Message, msg), first);
        assert_eq!(cache.len(), 1, "the second time is a hit");
        // The same bytes as another part are another entry.
        let as_system = cache.facts(Part::System, msg);
        assert_eq!(as_system.role, None);
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn tools_are_counted_and_their_text_is_prompt() {
        let tools = json!([{"type": "function", "function": {"name": "ab", "description": "cd"}}]);
        let f = Facts::of(Part::Tools, &tools);
        assert_eq!(f.items, 1);
        assert_eq!(f.chars, "function".len() as u64 + 4);
        assert_eq!(Facts::of(Part::Tools, &json!({"a": "b"})), Facts::default());
    }

    #[test]
    fn images_are_seen_and_not_counted_as_text() {
        let m = json!({"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            {"type": "text", "text": "Implement this"}]});
        let f = Facts::of(Part::Message, &m);
        assert!(f.images);
        assert_eq!(
            f.chars,
            "user".len() as u64 + "text".len() as u64 + "Implement this".len() as u64
        );
        assert_eq!(f.cues.reasoning, 1);
    }
}

/// The facts of each part of one chat body.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BodyFacts {
    /// One per message, when `messages` is an array.
    pub messages: Vec<Facts>,
    pub system: Option<Facts>,
    pub tools: Option<Facts>,
}

impl BodyFacts {
    /// Of a parsed body.
    pub fn of_tree(body: &serde_json::Map<String, Value>) -> BodyFacts {
        let messages = body.get("messages").and_then(Value::as_array);
        BodyFacts {
            messages: messages
                .into_iter()
                .flatten()
                .map(|m| Facts::of(Part::Message, m))
                .collect(),
            system: body.get("system").map(|v| Facts::of(Part::System, v)),
            tools: body.get("tools").map(|v| Facts::of(Part::Tools, v)),
        }
    }

    /// Of a scanned body: each part from `cache`, parsed only when new.
    pub fn of_scanned(body: &crate::chat_body::ChatBody, cache: &FactsCache) -> BodyFacts {
        BodyFacts {
            messages: body
                .message_texts()
                .map(|m| cache.facts(Part::Message, m))
                .collect(),
            system: body
                .field_text("system")
                .map(|v| cache.facts(Part::System, v)),
            tools: body
                .field_text("tools")
                .map(|v| cache.facts(Part::Tools, v)),
        }
    }
}
