//! The OpenAI Responses API through the sidecar, against a fake provider of each
//! kind: translated to Chat Completions and to Anthropic Messages (whole and
//! streamed, with tool calls), and relayed natively to a provider that serves
//! `/v1/responses` (reasoning items untouched, `previous_response_id` chains kept on
//! one conversation, refused with a clear 400 where the target cannot honour it).

mod common;

use common::*;
use keel_testkit::{Behavior, FakeProvider, ScriptedCall};
use serde_json::{Value, json};

struct Env {
    fake: FakeProvider,
    _cp: keel_testkit::ControlPlane,
    sc: keel_testkit::Sidecar,
    client: reqwest::Client,
    _tmp: tempfile::TempDir,
}

async fn start() -> Env {
    let fake = FakeProvider::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(&tmp.path().join("data"), &three_providers(&fake));
    let cp = keel_testkit::ControlPlane::start(tmp.path(), &cfg)
        .await
        .unwrap();
    let sc = keel_testkit::Sidecar::start(tmp.path(), &cp.url(), SIDECAR_ARGS, THREE_KEYS)
        .await
        .unwrap();
    Env {
        fake,
        _cp: cp,
        sc,
        client: reqwest::Client::new(),
        _tmp: tmp,
    }
}

impl Env {
    async fn post(&self, headers: &[(&str, &str)], body: &Value) -> reqwest::Response {
        let mut req = self
            .client
            .post(format!("{}/v1/responses", self.sc.url()))
            .json(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.unwrap()
    }

    fn last_request(&self) -> keel_testkit::Recorded {
        self.fake.requests().pop().expect("the fake got a request")
    }
}

fn tools() -> Value {
    json!([
        {"type": "function", "name": "exec_command", "description": "Run a shell command",
         "strict": false, "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}},
         "required": ["cmd"]}},
        {"type": "web_search"}
    ])
}

fn task(model: &str, stream: bool) -> Value {
    json!({
        "model": model, "stream": stream, "store": false,
        "instructions": "You are a coding agent.",
        "input": [{"type": "message", "role": "user",
                   "content": [{"type": "input_text", "text": "Count the files"}]}],
        "tools": tools(), "tool_choice": "auto", "parallel_tool_calls": false,
    })
}

/// The events of a Responses stream, checked: numbered 0.. in order, named by type.
async fn events(resp: reqwest::Response) -> Vec<Value> {
    assert_eq!(header(&resp, "content-type"), "text/event-stream");
    let text = resp.text().await.unwrap();
    let mut out = Vec::new();
    for frame in text.split("\n\n").filter(|f| !f.trim().is_empty()) {
        let event = frame.lines().find_map(|l| l.strip_prefix("event: "));
        let data = frame
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap();
        let v: Value = serde_json::from_str(data).unwrap();
        assert_eq!(event, v["type"].as_str(), "{frame}");
        assert_eq!(v["sequence_number"], out.len(), "{frame}");
        out.push(v);
    }
    out
}

fn kinds(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_are_translated_to_chat_completions_and_anthropic() {
    let env = start().await;
    let script = ScriptedCall {
        name: None,
        arguments: r#"{"cmd":"ls | wc -l"}"#.into(),
    };
    env.fake.set_behavior(Behavior {
        tool_call: Some(script),
        ..Default::default()
    });

    // Chat Completions, whole: the model calls the offered tool.
    let resp = env
        .post(&[("session-id", "sess-chat")], &task("chat-m", false))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-keel-model"), "chat-m");
    assert_eq!(header(&resp, "x-keel-session-source"), "harness");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        (v["object"].as_str(), v["status"].as_str()),
        (Some("response"), Some("completed"))
    );
    assert_eq!(v["output"][0]["type"], "function_call");
    assert_eq!(v["output"][0]["name"], "exec_command");
    assert_eq!(v["output"][0]["arguments"], r#"{"cmd":"ls | wc -l"}"#);
    let sent = env.last_request();
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(sent.body["model"], "chat-m-up");
    assert_eq!(
        sent.body["messages"][0],
        json!({"role": "system", "content": "You are a coding agent."})
    );
    assert_eq!(
        sent.body["tools"].as_array().unwrap().len(),
        1,
        "web_search is dropped"
    );
    assert_eq!(sent.body["parallel_tool_calls"], false);

    // Chat Completions, streamed: the tool's output goes back, the model answers in text.
    let mut next = task("chat-m", true);
    let items = next["input"].as_array_mut().unwrap();
    items.push(v["output"][0].clone());
    items.push(json!({"type": "function_call_output", "call_id": v["output"][0]["call_id"], "output": "7"}));
    let resp = env.post(&[("session-id", "sess-chat")], &next).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "x-keel-turn"),
        "2",
        "same conversation, next turn"
    );
    let ev = events(resp).await;
    let k = kinds(&ev);
    assert_eq!(
        &k[..5],
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
        ]
    );
    assert_eq!(
        k[k.len() - 4..],
        [
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let done = ev.last().unwrap();
    assert!(done["response"]["usage"]["input_tokens"].as_u64().unwrap() > 0);
    let sent = env.last_request();
    let msgs = sent.body["messages"].as_array().unwrap();
    assert_eq!(
        msgs[msgs.len() - 1],
        json!({"role": "tool", "tool_call_id": v["output"][0]["call_id"], "content": "7"})
    );
    assert_eq!(
        msgs[msgs.len() - 2]["tool_calls"][0]["function"]["name"],
        "exec_command"
    );
    assert_eq!(sent.body["stream_options"]["include_usage"], true);

    // Anthropic, streamed: the tool call arrives as function call events.
    let resp = env
        .post(&[("session-id", "sess-claude")], &task("claude-m", true))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-keel-provider"), "claude");
    let ev = events(resp).await;
    let args: String = ev
        .iter()
        .filter(|e| e["type"] == "response.function_call_arguments.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(args, r#"{"cmd":"ls | wc -l"}"#);
    let done = ev.last().unwrap();
    assert_eq!(done["type"], "response.completed");
    assert_eq!(done["response"]["output"][0]["name"], "exec_command");
    let sent = env.last_request();
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.body["system"][0]["text"], "You are a coding agent.");
    assert_eq!(sent.body["tools"][0]["name"], "exec_command");

    // A chain a translating target cannot continue: a 400 in the OpenAI error shape.
    let mut chained = task("chat-m", false);
    chained["previous_response_id"] = json!("resp_earlier");
    let resp = env.post(&[], &chained).await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    let message = err["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("previous_response_id") && message.contains("Chat Completions"),
        "{message}"
    );
    assert_eq!(err["error"]["type"], "invalid_request_error");

    // Bad input: a 400 naming the field.
    let resp = env.post(&[], &json!({"model": "chat-m"})).await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert!(err["error"]["message"].as_str().unwrap().contains("input"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_provider_gets_the_apps_body_and_chains_stay_on_one_conversation() {
    let env = start().await;
    let mut first = task("native-m", true);
    first["include"] = json!(["reasoning.encrypted_content"]);
    first["input"].as_array_mut().unwrap().insert(0, json!(
        {"type": "reasoning", "id": "rs_prev", "summary": [], "encrypted_content": "gAAAA-opaque=="}));
    let resp = env.post(&[("x-router-profile", "AGENT")], &first).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-keel-session-source"), "fingerprint");
    assert_eq!(header(&resp, "x-keel-turn"), "1");
    let ev = events(resp).await;
    assert_eq!(ev.last().unwrap()["type"], "response.completed");
    // Relayed as the provider sent it: its reasoning item and its function call.
    let reasoning = ev
        .iter()
        .find(|e| e["type"] == "response.output_item.done")
        .unwrap();
    assert_eq!(
        reasoning["item"]["encrypted_content"],
        "gAAAAABfakeEncryptedReasoning=="
    );
    let response_id = ev[0]["response"]["id"].as_str().unwrap().to_owned();
    let sent = env.last_request();
    assert_eq!(sent.path, "/v1/responses");
    assert_eq!(
        sent.authorization.as_deref(),
        Some("Bearer sk-native-secret")
    );
    let mut expected = first.clone();
    expected["model"] = json!("native-m-up");
    assert_eq!(
        sent.body, expected,
        "the app's body, model replaced, nothing else touched"
    );

    // The next turn names only the previous response: same conversation, next turn.
    let next = json!({
        "model": "native-m", "previous_response_id": response_id,
        "input": [{"type": "function_call_output", "call_id": "call_fake_0001", "output": "7"}],
        "tools": tools(),
    });
    let resp = env.post(&[("x-router-profile", "AGENT")], &next).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-keel-turn"), "2");
    assert_eq!(header(&resp, "x-keel-session-source"), "fingerprint");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["output"][1]["content"][0]["text"],
        keel_testkit::scripted::TEXT
    );
    assert_eq!(v["usage"]["input_tokens_details"]["cached_tokens"], 100);
    assert_eq!(env.last_request().body["previous_response_id"], response_id);
}
