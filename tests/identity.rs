//! Without `X-Conversation-ID`, a coding-agent harness's session id or a
//! fingerprint of the conversation's opening identifies the conversation, and
//! pins it as the header does; the response says which source was used.

mod common;

use common::*;
use serde_json::json;

async fn setup() -> Gateway {
    Gateway::start(
        &(model("strong-a", 3, 3.0, 15.0) + &model("cheap", 1, 0.1, 0.4)),
        &[],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_harness_session_header_pins_like_the_conversation_header() {
    let gw = setup().await;
    let (sc, client) = (&gw.sc, &gw.client);
    for turn in 1..=3 {
        let r = client
            .post(format!("{}/v1/chat/completions", sc.url()))
            .header("x-claude-code-session-id", "0b6f7c1e-claude-session")
            .header("x-router-profile", "AGENT")
            .json(&chat_body("auto", false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-keel-session-source"), "harness");
        assert_eq!(header(&r, "x-keel-pinned"), "true");
        assert_eq!(header(&r, "x-keel-turn"), turn.to_string());
        assert_eq!(header(&r, "x-keel-model"), "strong-a");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conversations_opening_identifies_an_agent_without_ids() {
    let gw = setup().await;
    let (sc, client) = (&gw.sc, &gw.client);
    let mut body = chat_body("auto", false);
    for turn in 1..=3 {
        let r = post_chat(client, &sc.url(), None, Some("AGENT"), &body).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-keel-session-source"), "fingerprint");
        assert_eq!(header(&r, "x-keel-turn"), turn.to_string());
        assert_eq!(header(&r, "x-keel-pinned"), "true");
        // The history grows as an agent's does; the opening stays.
        let messages = body["messages"].as_array_mut().unwrap();
        messages.push(json!({"role": "assistant", "content": format!("step {turn} done")}));
        messages.push(json!({"role": "user", "content": "next"}));
    }
    // Another opening is another conversation.
    let other =
        json!({"model": "auto", "messages": [{"role": "user", "content": "Different task"}]});
    let r = post_chat(client, &sc.url(), None, Some("AGENT"), &other).await;
    assert_eq!(header(&r, "x-keel-turn"), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shot_profiles_do_not_turn_openings_into_sessions() {
    let gw = setup().await;
    let (sc, client) = (&gw.sc, &gw.client);
    for _ in 0..2 {
        let r = post_chat(
            client,
            &sc.url(),
            None,
            Some("CHAT"),
            &chat_body("auto", false),
        )
        .await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-keel-turn"), "0");
        assert_eq!(header(&r, "x-keel-pinned"), "false");
        assert!(r.headers().get("x-keel-session-source").is_none());
    }
}
