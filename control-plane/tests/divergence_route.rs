//! Divergence detection through `RouterState::route`, in process: the sidecar's
//! fingerprints of a looping agent go in, a nudge comes out once, backs off, and lands in
//! the decision timeline and the metrics.

use std::{sync::Arc, time::Duration};

use keel::{
    fingerprint::{DEFAULT_WINDOW, Format, fingerprint_proto},
    pb,
};
use keel_control_plane::{
    config,
    router::RouterState,
    store::{SessionKey, SledStore},
};
use serde_json::{Value, json};

const BASE: &str = r#"
[server]
grpc_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"

[[providers]]
name = "alpha"
api = "openai"
base_url = "http://127.0.0.1:9/v1"
keys = [{ ref = "alpha-main" }]

[[models]]
name = "strong"
provider = "alpha"
upstream_model = "strong-up"
tier = 3
input_usd_per_mtok = 3.0
output_usd_per_mtok = 15.0
context_tokens = 200000
capabilities = ["tools"]
"#;

fn state(dir: &std::path::Path, extra: &str) -> RouterState {
    let config = config::parse(&format!("{BASE}{extra}")).unwrap();
    let store = SledStore::open(dir, 8 * 1024 * 1024, Duration::from_secs(3600)).unwrap();
    let (state, writer) = RouterState::new(config, Arc::new(store));
    // Runs until the test's runtime ends.
    tokio::spawn(writer.run(std::future::pending()));
    state
}

/// An OpenAI-format agent that reads the same file over and over; fresh call ids each
/// time, as a real agent would send.
fn looping_history(repeats: usize) -> Vec<Value> {
    let mut m = vec![
        json!({"role": "system", "content": "You are a coding agent."}),
        json!({"role": "user", "content": "Find where the config is loaded."}),
    ];
    for k in 0..repeats {
        let id = format!("call_{k:08}abcdef{k}");
        m.push(json!({"role": "assistant", "content": null, "tool_calls": [{"id": id, "type": "function",
            "function": {"name": "read_file", "arguments": "{\"path\":\"/repo/app/config.py\"}"}}]}));
        m.push(
            json!({"role": "tool", "tool_call_id": id, "content": "CONFIG = load('app.toml')\n"}),
        );
    }
    m
}

fn request(messages: &[Value]) -> pb::RouteRequest {
    pb::RouteRequest {
        conversation_id: "loop-1".into(),
        profile: "AGENT".into(),
        features: Some(pb::RequestFeatures {
            uses_tools: true,
            ..Default::default()
        }),
        fingerprints: fingerprint_proto(Format::OpenAi, messages, DEFAULT_WINDOW),
        ..Default::default()
    }
}

/// Routes one request per assistant turn (history up to it) plus one after the last
/// result; returns, per routed turn, the injected messages.
async fn replay(router: &RouterState, history: &[Value]) -> Vec<Vec<pb::InjectedMessage>> {
    let mut out = Vec::new();
    let ends = (0..history.len())
        .filter(|&i| history[i]["role"] == "assistant")
        .chain([history.len()]);
    for end in ends {
        let d = router.route(request(&history[..end])).await.unwrap();
        assert!(d.pinned, "AGENT stays pinned while nudged");
        out.push(d.inject);
    }
    out
}

#[tokio::test]
async fn looping_agent_is_nudged_once_then_backs_off_and_the_event_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let router = state(dir.path(), "");
    let injected = replay(&router, &looping_history(8)).await;

    let nudged: Vec<usize> = (0..injected.len())
        .filter(|&t| !injected[t].is_empty())
        .collect();
    // Request t carries t completed reads. Three identical reads of a short output →
    // nudge; the back-off (4 turns) keeps turns 4-6 quiet although the loop goes on;
    // turn 7 nudges again.
    assert_eq!(nudged, [3, 7], "{injected:?}");
    let nudge = &injected[3][0];
    assert_eq!(nudge.role, "system");
    assert_eq!(nudge.reason, "divergence:repeated_action");
    assert!(
        nudge.content.contains("same command or tool call")
            && nudge.content.contains("messages 2, 4 and 6"),
        "{}",
        nudge.content
    );

    let key = SessionKey::new(keel::DEFAULT_TENANT, "loop-1");
    let timeline = router.timeline(&key).await.unwrap();
    assert_eq!(timeline.len(), injected.len());
    let with_events: Vec<_> = timeline.iter().filter(|d| !d.events.is_empty()).collect();
    assert_eq!(with_events.len(), 2);
    let first = &with_events[0];
    assert_eq!(first.turn, 4, "routed turn numbers are 1-based");
    assert_eq!(first.events[0].pattern, "repeated_action");
    assert_eq!(first.events[0].escalation, "off");
    // Message indices of the three assistant turns involved.
    assert_eq!(first.events[0].turns, [2, 4, 6]);
    assert!(first.reason.contains("divergence nudge: repeated_action"));

    let metrics = router.metrics.render();
    assert!(
        metrics.contains("keel_divergence_nudges_total{pattern=\"repeated_action\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("keel_route_decisions_total{profile=\"AGENT\",kind=\"initialize\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("keel_route_decisions_total{profile=\"AGENT\",kind=\"retain\"} 8"),
        "{metrics}"
    );
}

#[tokio::test]
async fn detector_state_survives_in_the_session_and_a_resent_window_is_not_counted_twice() {
    let dir = tempfile::tempdir().unwrap();
    let router = state(dir.path(), "");
    let history = looping_history(2);
    for _ in 0..5 {
        // The same request retried: nothing new, so no nudge however often it comes.
        let d = router.route(request(&history)).await.unwrap();
        assert!(d.inject.is_empty());
    }
    let more = looping_history(3);
    let d = router.route(request(&more)).await.unwrap();
    assert_eq!(d.inject.len(), 1, "the third read is the first new step");
}

#[tokio::test]
async fn escalation_stop_refuses_the_turn_with_failed_precondition() {
    let dir = tempfile::tempdir().unwrap();
    let router = state(dir.path(), "\n[divergence]\nescalation = \"stop\"\n");
    let history = looping_history(7);
    let mut stopped = None;
    for end in 3..=history.len() {
        if history.get(end).is_some_and(|m| m["role"] != "assistant") {
            continue;
        }
        if let Err(status) = router.route(request(&history[..end])).await {
            stopped = Some((end, status));
            break;
        }
    }
    let (end, status) = stopped.expect("the loop is stopped after the unheeded nudge");
    assert_eq!(
        end,
        history.len(),
        "first nudge only nudges; the second stops"
    );
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(
        status
            .message()
            .starts_with("divergence stop: repeated_action")
    );
    assert_eq!(
        status.metadata().get("keel-divergence").unwrap(),
        "repeated_action"
    );
    let key = SessionKey::new(keel::DEFAULT_TENANT, "loop-1");
    let last = router.timeline(&key).await.unwrap().pop().unwrap();
    assert_eq!(last.events[0].escalation, "stop");
    assert!(
        router
            .metrics
            .render()
            .contains("keel_divergence_escalations_total{escalation=\"stop\"} 1")
    );
}

#[tokio::test]
async fn disabled_detection_ignores_fingerprints() {
    let dir = tempfile::tempdir().unwrap();
    let router = state(dir.path(), "\n[divergence]\nenabled = false\n");
    let injected = replay(&router, &looping_history(8)).await;
    assert!(injected.iter().all(Vec::is_empty));
}

/// A tau-bench-style booking: the agent pays `amounts[k]` on its k-th attempt, each
/// answered "Error: payment amount does not add up, total price is 1002, but paid N";
/// a `think` call, a chat turn and the customer's confirmation come between attempts.
fn booking_history(payments: &[(&str, u32)]) -> Vec<Value> {
    let mut m = vec![
        json!({"role": "system", "content": "You are an airline customer service agent."}),
        json!({"role": "user", "content": "Book the SFO to JFK flight for three passengers, please."}),
    ];
    for (k, (card, amount)) in payments.iter().enumerate() {
        let id = format!("call_book{k:04}");
        let args = format!(
            "{{\"user_id\":\"noah_muller_9847\",\"flights\":[{{\"flight_number\":\"HAT082\",\"date\":\"2024-05-17\"}}],\"payment_methods\":[{{\"payment_id\":\"{card}\",\"amount\":{amount}}}]}}"
        );
        m.push(json!({"role": "assistant", "content": null, "tool_calls": [{"id": id, "type": "function",
            "function": {"name": "book_reservation", "arguments": args}}]}));
        m.push(json!({"role": "tool", "tool_call_id": id, "name": "book_reservation",
            "content": format!("Error: payment amount does not add up, total price is 1002, but paid {amount}")}));
        let think = format!("call_think{k:04}");
        m.push(json!({"role": "assistant", "content": null, "tool_calls": [{"id": think, "type": "function",
            "function": {"name": "think", "arguments": format!("{{\"thought\":\"attempt {k} failed, recompute\"}}")}}]}));
        m.push(json!({"role": "tool", "tool_call_id": think, "name": "think", "content": ""}));
        m.push(json!({"role": "assistant", "content": format!("I recalculated the total for attempt {k}. Shall I proceed with the booking?")}));
        m.push(json!({"role": "user", "content": format!("Yes, go ahead with the booking, number {k}.")}));
    }
    m
}

#[tokio::test]
async fn going_back_to_a_payment_that_already_failed_is_nudged_with_the_customer_between() {
    let dir = tempfile::tempdir().unwrap();
    let router = state(dir.path(), "");
    let history = booking_history(&[
        ("credit_card_6040264", 957),
        ("credit_card_6040264", 1047),
        ("credit_card_6040264", 957),
    ]);
    let injected = replay(&router, &history).await;
    let nudged: Vec<&pb::InjectedMessage> = injected.iter().flatten().collect();
    assert_eq!(nudged.len(), 1, "{injected:?}");
    assert_eq!(nudged[0].reason, "divergence:repeated_error");
    assert!(
        nudged[0].content.contains("messages 2, 8 and 14"),
        "{}",
        nudged[0].content
    );
}

#[tokio::test]
async fn another_payment_method_after_each_failure_is_not_nudged() {
    let dir = tempfile::tempdir().unwrap();
    let router = state(dir.path(), "");
    let history = booking_history(&[
        ("gift_card_7480005", 957),
        ("gift_card_6276644", 957),
        ("gift_card_7091239", 957),
    ]);
    let injected = replay(&router, &history).await;
    assert!(injected.iter().all(Vec::is_empty), "{injected:?}");
}
