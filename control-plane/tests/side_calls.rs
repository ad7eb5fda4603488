//! Main line and side calls through `RouterState::route`, in process: a side
//! call (explicit model below the floor, or marked by the caller) never
//! creates, takes or moves the pin and is not a turn; a repeated turn is the
//! same turn; wildcard aliases resolve a harness's default model names.

use std::{sync::Arc, time::Duration};

use keel::pb::{self, DecisionKind};
use keel_control_plane::{
    config,
    router::RouterState,
    store::{SessionKey, SledStore},
};

const CONFIG: &str = r#"
[server]
grpc_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"

[[providers]]
name = "alpha"
api = "anthropic"
base_url = "http://127.0.0.1:9"
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

[[models]]
name = "small"
provider = "alpha"
upstream_model = "small-up"
tier = 1
input_usd_per_mtok = 0.25
output_usd_per_mtok = 1.25
context_tokens = 200000
capabilities = ["tools"]

[aliases]
"claude-*" = "auto"
"claude-haiku-*" = "small"
"gpt-5*" = "strong"

[profiles.AGENT]
session_lock = true
quality_floor = 3
"#;

fn state(dir: &std::path::Path) -> RouterState {
    let config = config::parse(CONFIG).unwrap();
    let store = SledStore::open(dir, 8 * 1024 * 1024, Duration::from_secs(3600)).unwrap();
    let (state, writer) = RouterState::new(config, Arc::new(store));
    tokio::spawn(writer.run(std::future::pending()));
    state
}

fn request(model: &str) -> pb::RouteRequest {
    pb::RouteRequest {
        conversation_id: "cc-session-1".into(),
        session_source: pb::SessionSource::Harness as i32,
        profile: "AGENT".into(),
        model: model.into(),
        features: Some(pb::RequestFeatures {
            uses_tools: true,
            tool_count: 12,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn model(d: &pb::Decision) -> &str {
    &d.target.as_ref().unwrap().model
}

async fn turns(state: &RouterState) -> Option<u32> {
    let key = SessionKey::new("default", "cc-session-1");
    state
        .store
        .get(&key, keel_control_plane::store::now_ms())
        .unwrap()
        .map(|s| s.turns)
}

#[tokio::test]
async fn side_calls_never_pin_and_are_not_turns() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());

    // Claude Code's title call on the small model arrives first.
    let title = state
        .route(request("claude-haiku-4-5-20251001"))
        .await
        .unwrap();
    assert_eq!(title.kind(), DecisionKind::Side);
    assert_eq!(model(&title), "small");
    assert_eq!(title.turn, 0);
    assert!(!title.pinned);
    assert!(
        title.reason.contains("below the AGENT floor 3"),
        "{}",
        title.reason
    );
    assert_eq!(turns(&state).await, None, "a side call makes no session");

    // The main line names the harness's default model: resolved by the
    // wildcard alias to `auto`, it pins the best model at the floor.
    let first = state
        .route(request("claude-opus-4-5-20251101"))
        .await
        .unwrap();
    assert_eq!(first.kind(), DecisionKind::Initialize);
    assert_eq!(model(&first), "strong");
    assert_eq!(first.turn, 1);

    // A side call the sidecar marked, naming no model: served by the pin,
    // still not a turn.
    let mut count = request("");
    count.side_call = "count_tokens".into();
    let count = state.route(count).await.unwrap();
    assert_eq!(count.kind(), DecisionKind::Side);
    assert_eq!(model(&count), "strong");
    assert!(
        count.reason.starts_with("side call (count_tokens)"),
        "{}",
        count.reason
    );

    // An explicit model below the floor on a pinned main line: a side call
    // on that model; the pin stays.
    let small = state.route(request("small")).await.unwrap();
    assert_eq!(small.kind(), DecisionKind::Side);
    assert_eq!(model(&small), "small");
    assert_eq!(turns(&state).await, Some(1));

    // The next main-line turn keeps the pin.
    let second = state.route(request("gpt-5.1")).await.unwrap();
    assert_eq!(second.kind(), DecisionKind::Retain);
    assert_eq!(model(&second), "strong");
    assert_eq!(second.turn, 2);

    // A retry of that turn is the same turn.
    let mut retry = request("claude-opus-4-5-20251101");
    retry.repeat_turn = true;
    let retry = state.route(retry).await.unwrap();
    assert_eq!(retry.kind(), DecisionKind::Retain);
    assert_eq!(retry.turn, 2);
    assert_eq!(model(&retry), "strong");
    assert_eq!(turns(&state).await, Some(2));

    // Side calls are on the timeline, as side.
    let key = SessionKey::new("default", "cc-session-1");
    let kinds: Vec<i32> = state
        .timeline(&key)
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind)
        .collect();
    let side = DecisionKind::Side as i32;
    assert_eq!(kinds.iter().filter(|&&k| k == side).count(), 3, "{kinds:?}");
}

#[tokio::test]
async fn names_no_alias_matches_are_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());
    let err = state.route(request("gpt-4o")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    // A model name wins over a pattern; an exact alias over a wider one.
    let d = state.route(request("claude-haiku-4-5")).await.unwrap();
    assert_eq!(model(&d), "small");
}

#[tokio::test]
async fn repeat_of_an_unpinned_conversation_is_a_turn() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());
    // Nothing to repeat yet: the first turn pins as usual.
    let mut first = request("");
    first.repeat_turn = true;
    let first = state.route(first).await.unwrap();
    assert_eq!(first.kind(), DecisionKind::Initialize);
    assert_eq!(first.turn, 1);
}

#[tokio::test]
async fn side_calls_skip_the_turn_cap_but_not_the_spend_cap() {
    let dir = tempfile::tempdir().unwrap();
    let config = config::parse(&format!(
        "{CONFIG}\n[profiles.AGENT.budgets]\nper_conversation_turns = 1\nper_conversation_usd = 1.0\n"
    ))
    .unwrap();
    let store = SledStore::open(dir.path(), 8 * 1024 * 1024, Duration::from_secs(3600)).unwrap();
    let (state, writer) = RouterState::new(config, Arc::new(store));
    tokio::spawn(writer.run(std::future::pending()));

    let first = state.route(request("")).await.unwrap();
    assert_eq!(first.turn, 1);
    // The turn cap is reached: the main line pauses, side calls go on.
    let err = state.route(request("")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    let side = state.route(request("small")).await.unwrap();
    assert_eq!(side.kind(), DecisionKind::Side);

    // Spend over the USD cap ($3 of input on strong): side calls pause too.
    let target = first.target.clone();
    state
        .report(pb::ReportBatch {
            outcomes: vec![pb::Outcome {
                decision_id: first.decision_id.clone(),
                conversation_id: "cc-session-1".into(),
                profile: "AGENT".into(),
                attempts: vec![pb::Attempt {
                    target,
                    status: 200,
                    ..Default::default()
                }],
                usage: Some(pb::Usage {
                    input_tokens: 1_000_000,
                    ..Default::default()
                }),
                success: true,
                turn: 1,
                ..Default::default()
            }],
        })
        .await
        .unwrap();
    let err = state.route(request("small")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    assert_eq!(
        err.metadata().get("keel-budget").unwrap(),
        "conversation_usd"
    );
}
