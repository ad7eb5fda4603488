//! Builds Anthropic's strictly alternating `messages` list.

use serde_json::{Value, json};

/// Anthropic message roles.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Role {
    User,
    Assistant,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// Accumulates turns, merging consecutive same-role messages because Anthropic requires
/// roles to alternate, and skipping empty ones because it rejects empty content.
#[derive(Default)]
pub(super) struct Turns {
    done: Vec<(Role, Vec<Value>)>,
    /// The open turn, kept apart so appending never needs a fallible `last_mut`.
    current: Option<(Role, Vec<Value>)>,
}

fn is_tool_result(block: &Value) -> bool {
    block.get("type").and_then(Value::as_str) == Some("tool_result")
}

impl Turns {
    fn last_of(&mut self, role: Role) -> &mut Vec<Value> {
        if self.current.as_ref().is_some_and(|(r, _)| *r != role)
            && let Some(turn) = self.current.take()
        {
            self.done.push(turn);
        }
        &mut self.current.get_or_insert_with(|| (role, Vec::new())).1
    }

    /// Appends blocks to the turn of `role`, opening a new turn on a role change.
    pub(super) fn push(&mut self, role: Role, blocks: Vec<Value>) {
        if blocks.is_empty() {
            return;
        }
        self.last_of(role).extend(blocks);
    }

    /// Adds a tool result to the current user turn, after earlier tool results but before
    /// any other content: Anthropic requires tool results to lead the user message.
    pub(super) fn push_tool_result(&mut self, block: Value) {
        let blocks = self.last_of(Role::User);
        let at = blocks.iter().take_while(|b| is_tool_result(b)).count();
        blocks.insert(at, block);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.done.is_empty() && self.current.is_none()
    }

    pub(super) fn into_messages(self) -> Vec<Value> {
        self.done
            .into_iter()
            .chain(self.current)
            .map(|(role, content)| json!({"role": role.as_str(), "content": content}))
            .collect()
    }
}
