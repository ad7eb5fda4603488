//! The sidecar holds up against slow and malformed clients: a stalled body
//! gives its concurrency slot back at the body deadline (408), headers that
//! never finish or run past 64 KB are cut off (431 with a JSON body), and
//! hyper's own error answers carry a JSON body too.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Sends `head` (and nothing more) and returns the open connection.
async fn send(addr: std::net::SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    s
}

/// Reads until the server closes (bounded): the whole answer.
async fn answer(mut s: TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut out))
        .await
        .expect("the sidecar closes the connection")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

fn json_body(answer: &str) -> Value {
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_bodies_give_their_slots_back_at_the_deadline() {
    let gw = Gateway::start(
        &model("strong", 3, 3.0, 15.0),
        &["--max-concurrency", "2", "--body-idle-timeout", "1s"],
    )
    .await;
    let head = "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n{\"model\":";
    let stalled = [
        send(gw.sc.addr, head.as_bytes()).await,
        send(gw.sc.addr, head.as_bytes()).await,
    ];
    // Both slots are taken: the next request is shed at once...
    let started = Instant::now();
    let body = chat_body("auto", false);
    let mut shed = false;
    loop {
        let r = gw.chat(None, Some("CHAT"), &body).await;
        match r.status().as_u16() {
            503 => shed = true,
            200 => break,
            other => panic!("unexpected {other}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "slots never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(shed, "the stalled bodies held both slots first");
    // ...and the stalled ones got 408 in the caller's shape.
    for s in stalled {
        let a = answer(s).await;
        assert!(a.starts_with("HTTP/1.1 408"), "{a}");
        assert!(json_body(&a)["error"]["message"].is_string(), "{a}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_slow_and_malformed_heads_are_cut_off_with_json() {
    let gw = Gateway::start(&model("strong", 3, 3.0, 15.0), &["--header-timeout", "1s"]).await;
    // 70 KB of headers: 431 with a JSON body in a shape both APIs parse.
    let big = format!(
        "POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-filler: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let a = answer(send(gw.sc.addr, big.as_bytes()).await).await;
    assert!(a.starts_with("HTTP/1.1 431"), "{}", &a[..a.len().min(200)]);
    let v = json_body(&a);
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    // A malformed request line: 400 with a JSON body.
    let a = answer(send(gw.sc.addr, b"BR\x01KEN / HTTP/1.1\r\n\r\n").await).await;
    assert!(a.starts_with("HTTP/1.1 400"), "{a}");
    assert!(json_body(&a)["error"]["message"].is_string());
    // Headers that never finish, and an idle keep-alive connection, are
    // closed at the header deadline.
    let started = Instant::now();
    let _ = answer(send(gw.sc.addr, b"POST /v1/messages HTTP/1.1\r\nhost: x\r\n").await).await;
    let _ = answer(send(gw.sc.addr, b"").await).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    // A keep-alive connection left idle after a request is closed too.
    let mut s = send(gw.sc.addr, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let idle = Instant::now();
    let rest = answer(s).await;
    assert!(rest.is_empty(), "{rest}");
    assert!(
        idle.elapsed() >= Duration::from_millis(900),
        "{:?}",
        idle.elapsed()
    );
    // Headers under the limit still work.
    let r = gw
        .client
        .post(format!("{}/v1/chat/completions", gw.sc.url()))
        .header("x-filler", "a".repeat(32 * 1024))
        .json(&chat_body("auto", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_descriptor_limit_accept_backs_off_and_logs_rarely() {
    use std::io::{BufRead, BufReader};
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("sidecar.log");
    // Few descriptors: the sidecar runs out of them after a few dozen
    // connections, and accept fails (EMFILE) while clients keep coming.
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 64 && exec '{}' --listen 127.0.0.1:0 --control-plane http://127.0.0.1:9",
            keel_testkit::bin_path("keel-sidecar").display()
        ))
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    /// Kills the sidecar however the test ends.
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let _child = Reap(child);
    let mut ready = String::new();
    BufReader::new(stdout).read_line(&mut ready).unwrap();
    let addr: std::net::SocketAddr = ready.trim().rsplit_once('=').unwrap().1.parse().unwrap();
    let mut conns = Vec::new();
    for _ in 0..120 {
        conns.push(TcpStream::connect(addr).await.unwrap());
    }
    // Two seconds at the limit: a spinning loop would log megabytes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let text = std::fs::read_to_string(&log).unwrap();
    let warnings = text.matches("accept failed").count();
    assert!(warnings >= 1, "the limit was reached: {text}");
    assert!(
        warnings <= 2 && text.len() < 20_000,
        "{warnings} warnings, {} bytes",
        text.len()
    );
    // Once clients let go, it serves again.
    drop(conns);
    let client = reqwest::Client::new();
    let started = Instant::now();
    while !client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "never recovered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
