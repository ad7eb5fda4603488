//! Compact features of a request for the router, from the facts of its
//! parts (facts.rs) and a few small top-level fields.

use keel::pb::RequestFeatures;
use serde_json::{Map, Value};

use crate::{
    chat_body::ChatView,
    cues::Cues,
    facts::{BodyFacts, Role},
};

/// Rough characters-per-token ratio; routing needs the order of magnitude,
/// not a tokenizer.
const CHARS_PER_TOKEN: u64 = 4;

/// Computes the features of a parsed chat request.
pub fn compute(body: &Map<String, Value>, stream: bool) -> RequestFeatures {
    from_facts(&BodyFacts::of_tree(body), body, stream)
}

/// The features of a chat request whose parts' facts are `facts`; `body`
/// gives the small top-level fields.
pub fn from_facts(facts: &BodyFacts, body: &impl ChatView, stream: bool) -> RequestFeatures {
    let parts = || {
        facts
            .messages
            .iter()
            .chain(&facts.system)
            .chain(&facts.tools)
    };
    let chars: u64 = parts().map(|f| f.chars).sum();
    let tool_count = facts.tools.map_or(0, |t| t.items);
    let max_output = ["max_tokens", "max_completion_tokens"]
        .iter()
        .find_map(|k| body.value(k).and_then(|v| v.as_u64()))
        .unwrap_or(0);
    let cues = difficulty_cues(facts);
    RequestFeatures {
        estimated_prompt_tokens: u32::try_from(chars / CHARS_PER_TOKEN).unwrap_or(u32::MAX),
        uses_tools: tool_count > 0 || parts().any(|f| f.tool_traffic),
        has_images: parts().any(|f| f.images),
        max_output_tokens: u32::try_from(max_output).unwrap_or(u32::MAX),
        stream,
        ends_with_tool_result: facts.messages.last().is_some_and(|m| m.tool_result),
        code_cues: cues.code,
        reasoning_cues: cues.reasoning,
        tool_count,
        reasoning_requested: reasoning_requested(body),
    }
}

/// Cues over the system prompt(s) and the last user message (the task at
/// hand).
fn difficulty_cues(facts: &BodyFacts) -> Cues {
    let system = facts.system.iter().chain(
        facts
            .messages
            .iter()
            .filter(|m| matches!(m.role, Some(Role::System | Role::Developer))),
    );
    let task = facts
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Some(Role::User) && !m.tool_result);
    system
        .chain(task)
        .fold(Cues::default(), |sum, f| sum.plus(f.cues))
}

/// OpenAI `reasoning_effort` / `reasoning`, Anthropic `thinking` (enabled).
fn reasoning_requested(body: &impl ChatView) -> bool {
    body.value("reasoning_effort")
        .is_some_and(|e| e.as_str().is_some_and(|e| e != "none" && e != "minimal"))
        || body.value("reasoning").is_some_and(|r| r.is_object())
        || body
            .value("thinking")
            .is_some_and(|t| t.get("type").and_then(Value::as_str) == Some("enabled"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn features(body: Value) -> RequestFeatures {
        compute(body.as_object().unwrap(), false)
    }

    #[test]
    fn difficulty_cues_come_from_the_system_prompt_and_the_last_user_message() {
        let f = features(json!({"messages": [
                {"role": "system", "content": "Refactor code when asked."},
                {"role": "user", "content": "old question: debug debug debug"},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": "Now implement it:\n```\nlet x = 1;\n```"}
            ], "tools": [{"type": "function", "function": {"name": "a"}}],
               "reasoning_effort": "high"}));
        assert_eq!(
            f.reasoning_cues, 2,
            "refactor + implement; older turns ignored"
        );
        assert_eq!(f.code_cues, 2, "a fenced block and `let x = 1;`");
        assert_eq!(f.tool_count, 1);
        assert!(f.reasoning_requested);

        let f = features(json!({"system": [{"type": "text", "text": "Prove it."}],
                   "thinking": {"type": "enabled", "budget_tokens": 1024},
                   "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]}));
        assert_eq!((f.reasoning_cues, f.code_cues), (1, 0));
        assert!(f.reasoning_requested);
    }
}
