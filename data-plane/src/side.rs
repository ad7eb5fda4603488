//! Side calls as the sidecar sees them. A harness makes auxiliary calls
//! under the agent's session id (titles, summaries, compaction, classifiers,
//! token counts); the control plane routes them on their own so they never
//! create, take or move the pin and are not turns. What only the sidecar can
//! see, it tells the control plane in `RouteRequest.side_call`:
//!
//! * `count_tokens`: a token count (`POST /v1/messages/count_tokens`);
//! * `claude-code: no tools`: a Claude Code request (`x-app: cli` or its
//!   `claude-cli/` user agent) that declares no tools — Claude Code's main
//!   line always declares its tools;
//! * `no tools where the main line has them`: a request without tools on a
//!   conversation whose main-line requests through this sidecar declared
//!   tools.
//!
//! The control plane itself takes an explicit model below a session-locked
//! profile's quality floor as a side call (control-plane router/side.rs).

use std::{collections::HashSet, sync::Mutex};

use http::HeaderMap;
use keel::pb;

/// Most conversations remembered as having tools on their main line; past
/// it the memory starts afresh (a forgotten conversation is learnt again
/// from its next main-line request).
const MAX_CONVERSATIONS: usize = 100_000;

pub const COUNT_TOKENS: &str = "count_tokens";

/// Conversations whose main line declares tools.
#[derive(Default)]
pub struct MainLines {
    with_tools: Mutex<HashSet<u128>>,
}

impl MainLines {
    fn key(conversation_id: &str) -> u128 {
        xxhash_rust::xxh3::xxh3_128(conversation_id.as_bytes())
    }

    fn has_tools(&self, conversation_id: &str) -> bool {
        let set = self.with_tools.lock().unwrap_or_else(|p| p.into_inner());
        set.contains(&Self::key(conversation_id))
    }

    /// Learns from a decided request: a main-line request that declares
    /// tools marks its conversation.
    pub fn decided(&self, conversation_id: &str, tool_count: u32, decision: &pb::Decision) {
        if conversation_id.is_empty()
            || tool_count == 0
            || decision.kind == pb::DecisionKind::Side as i32
        {
            return;
        }
        let mut set = self.with_tools.lock().unwrap_or_else(|p| p.into_inner());
        if set.len() >= MAX_CONVERSATIONS {
            set.clear();
        }
        set.insert(Self::key(conversation_id));
    }
}

/// Why the request is a side call of its conversation, as far as the
/// sidecar can tell; empty for the main line (or no conversation).
pub fn side_call(
    headers: &HeaderMap,
    features: &pb::RequestFeatures,
    conversation_id: &str,
    main_lines: &MainLines,
) -> String {
    if conversation_id.is_empty() || features.tool_count > 0 {
        return String::new();
    }
    if is_claude_code(headers) {
        return "claude-code: no tools".to_owned();
    }
    if main_lines.has_tools(conversation_id) {
        return "no tools where the main line has them".to_owned();
    }
    String::new()
}

/// Whether Claude Code sent the request (its session header alone is not
/// enough: other clients reuse it).
fn is_claude_code(headers: &HeaderMap) -> bool {
    let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    value("x-app") == Some("cli")
        || value("user-agent").is_some_and(|ua| ua.starts_with("claude-cli/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features(tool_count: u32) -> pb::RequestFeatures {
        pb::RequestFeatures {
            tool_count,
            ..Default::default()
        }
    }

    #[test]
    fn claude_code_without_tools_is_a_side_call() {
        let mut h = HeaderMap::new();
        h.insert("x-claude-code-session-id", "s1".parse().unwrap());
        let lines = MainLines::default();
        assert_eq!(side_call(&h, &features(0), "s1", &lines), "");
        h.insert(
            "user-agent",
            "claude-cli/2.1.332 (external, sdk-cli)".parse().unwrap(),
        );
        assert_eq!(
            side_call(&h, &features(0), "s1", &lines),
            "claude-code: no tools"
        );
        assert_eq!(side_call(&h, &features(12), "s1", &lines), "");
        // Without a conversation there is no main line to keep apart from.
        assert_eq!(side_call(&h, &features(0), "", &lines), "");
    }

    #[test]
    fn no_tools_where_the_main_line_has_them() {
        let h = HeaderMap::new();
        let lines = MainLines::default();
        assert_eq!(side_call(&h, &features(0), "c", &lines), "");
        let main = pb::Decision {
            kind: pb::DecisionKind::Initialize as i32,
            ..Default::default()
        };
        lines.decided("c", 3, &main);
        assert_eq!(
            side_call(&h, &features(0), "c", &lines),
            "no tools where the main line has them"
        );
        // A side call with tools does not make a main line.
        let side = pb::Decision {
            kind: pb::DecisionKind::Side as i32,
            ..Default::default()
        };
        lines.decided("d", 3, &side);
        assert_eq!(side_call(&h, &features(0), "d", &lines), "");
    }
}
