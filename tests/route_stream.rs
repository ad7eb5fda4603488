//! `RouteStream`: `Route` multiplexed over one gRPC stream, as the sidecar
//! uses it and as other languages may. Answers are matched by id, a refusal
//! is an answer (the stream stays open), and the decisions are the ones
//! unary `Route` makes for the same conversation.

mod common;

use std::collections::HashMap;

use common::*;
use keel::pb::{self, router_client::RouterClient};
use tokio_stream::{StreamExt, wrappers::ReceiverStream};

/// A gateway whose AGENT profile pins on a model of quality 3 or more:
/// `strong-1`, and the other models in `extra`.
async fn agent_gateway(extra: &str) -> Gateway {
    let config = format!(
        "{}{extra}[profiles.AGENT]\nsession_lock = true\nquality_floor = 3\n",
        model("strong-1", 3, 3.0, 15.0)
    );
    Gateway::start(&config, &[]).await
}

/// Sends a first AGENT turn of a new conversation `{prefix}{id}` under each
/// id: each waits for its pin to reach disk.
async fn send_new_conversations(
    tx: &tokio::sync::mpsc::Sender<pb::RouteStreamRequest>,
    prefix: &str,
    ids: impl IntoIterator<Item = u64>,
) {
    for id in ids {
        tx.send(pb::RouteStreamRequest {
            id,
            request: Some(agent_turn(&format!("{prefix}{id}"))),
            ..Default::default()
        })
        .await
        .unwrap();
    }
}

fn agent_turn(conversation: &str) -> pb::RouteRequest {
    pb::RouteRequest {
        conversation_id: conversation.into(),
        profile: "AGENT".into(),
        session_source: pb::SessionSource::Header as i32,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_come_back_by_id_a_refusal_leaves_the_stream_open_and_pins_match_unary_route() {
    let gw = agent_gateway(&model("small-1", 1, 0.1, 0.4)).await;
    let mut router = RouterClient::connect(gw.cp.url()).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let mut answers = router
        .route_stream(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let ask = |id: u64, request: pb::RouteRequest| pb::RouteStreamRequest {
        id,
        request: Some(request),
        ..Default::default()
    };
    let mut unknown = agent_turn("conv-b");
    unknown.profile = "NO-SUCH-PROFILE".into();

    // Ask one at a time so that turn numbers are fixed; ids are the caller's.
    let mut got = HashMap::new();
    for (id, request) in [
        (70, agent_turn("conv-a")),
        (3, unknown),
        (900, agent_turn("conv-a")),
    ] {
        tx.send(ask(id, request)).await.unwrap();
        let answer = answers.next().await.expect("an answer").unwrap();
        got.insert(answer.id, answer.result.expect("a result"));
    }
    use pb::route_stream_response::Result as R;
    let R::Decision(first) = &got[&70] else {
        panic!("turn 1 refused: {:?}", got[&70])
    };
    assert_eq!(first.kind(), pb::DecisionKind::Initialize);
    assert!(first.pinned);
    assert_eq!(first.turn, 1);
    let pinned = first.target.as_ref().unwrap().model.clone();
    assert_eq!(pinned, "strong-1", "AGENT floor 3 pins the tier-3 model");
    let R::Error(refused) = &got[&3] else {
        panic!("unknown profile accepted: {:?}", got[&3])
    };
    assert_eq!(refused.code, tonic::Code::InvalidArgument as i32);
    assert!(
        refused.message.contains("unknown profile"),
        "{}",
        refused.message
    );
    let R::Decision(second) = &got[&900] else {
        panic!("turn 2 refused after a refusal: {:?}", got[&900])
    };
    assert_eq!(second.kind(), pb::DecisionKind::Retain);
    assert_eq!(second.turn, 2);
    assert_eq!(second.target.as_ref().unwrap().model, pinned);

    // Unary Route sees the same session: turn 3 on the same pin.
    let third = router
        .route(agent_turn("conv-a"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(third.turn, 3);
    assert_eq!(third.target.unwrap().model, pinned);

    // Ending the request stream ends the answers.
    drop(tx);
    assert!(answers.next().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_when_the_caller_ends_its_stream_are_all_answered() {
    let gw = agent_gateway("").await;
    let mut router = RouterClient::connect(gw.cp.url()).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    // Every request is a new conversation, so each waits for its pin to
    // reach disk; the caller ends its side before any answer comes.
    send_new_conversations(&tx, "half-closed-", 0..32).await;
    drop(tx);
    let answers: Vec<_> = router
        .route_stream(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner()
        .collect()
        .await;
    let mut ids: Vec<u64> = answers
        .into_iter()
        .map(|a| {
            let a = a.expect("an answer, not a status");
            assert!(
                matches!(
                    a.result,
                    Some(pb::route_stream_response::Result::Decision(_))
                ),
                "request {} refused: {:?}",
                a.id,
                a.result
            );
            a.id
        })
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..32).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_asking_with_unary_route_keeps_the_pin_as_with_the_stream() {
    let models = format!(
        "{}{}",
        model("strong-1", 3, 3.0, 15.0),
        model("small-1", 1, 0.1, 0.4)
    );
    for rpc in ["unary", "stream"] {
        let gw = Gateway::start(&models, &["--route-rpc", rpc]).await;
        let body = chat_body("auto", false);
        for turn in 1..=3 {
            let r = gw.chat(Some("conv-u"), Some("AGENT"), &body).await;
            assert_eq!(r.status(), 200, "{rpc} turn {turn}");
            assert_eq!(header(&r, "x-keel-model"), "strong-1", "{rpc}");
            assert_eq!(header(&r, "x-keel-pinned"), "true", "{rpc}");
            assert_eq!(header(&r, "x-keel-turn"), turn.to_string(), "{rpc}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_go_only_to_a_caller_that_asks_and_never_stand_for_an_answer() {
    let gw = agent_gateway("").await;
    let mut router = RouterClient::connect(gw.cp.url()).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    request
        .metadata_mut()
        .insert(keel::metadata::HEARTBEATS, "1".parse().unwrap());
    let mut answers = router.route_stream(request).await.unwrap().into_inner();
    // New conversations: each waits for its pin's disk sync, when heartbeats
    // may come.
    send_new_conversations(&tx, "beat-", 1..=32).await;
    let mut decided = Vec::new();
    while decided.len() < 32 {
        let a = answers.next().await.expect("an answer").unwrap();
        match a.result {
            None => assert_eq!(a.id, 0, "a heartbeat has id 0"),
            Some(pb::route_stream_response::Result::Decision(_)) => decided.push(a.id),
            Some(other) => panic!("request {} refused: {other:?}", a.id),
        }
    }
    decided.sort_unstable();
    assert_eq!(decided, (1..=32).collect::<Vec<_>>());
    drop(tx);
    while let Some(a) = answers.next().await {
        assert!(
            a.unwrap().result.is_none(),
            "only heartbeats after the last answer"
        );
    }
}
