//! `Route` cost. Harness-free, never run by `cargo test`.
//!
//! In process (`RouterState::route` on a sled store in a temp dir):
//!   cargo bench -p keel-control-plane --bench route [-- --sessions 10000,1000000 --cache-mb 64]
//! Over gRPC against a running control plane whose store holds `--ids`
//! pinned conversations (`scripts/bench.sh` fills it with keel-bench-populate),
//! unary `Route` and the sidecar's `RouteStream` client:
//!   cargo bench -p keel-control-plane --bench route -- --grpc http://127.0.0.1:PORT --ids 10000
//!
//! Prints one JSON line per case: p50/p99/p99.9/max/mean in µs and
//! decisions per second.

use std::{
    hint::black_box,
    sync::Arc,
    time::{Duration, Instant},
};

use keel::pb::{self, RequestFeatures, RouteRequest, router_client::RouterClient};
use keel_control_plane::{
    config,
    router::RouterState,
    store::{DecisionEntry, Session, SessionKey, SessionStore, SledStore, now_ms},
};
use keel_data_plane::route_stream::{RouteRpc, RouteStream};

/// Benchmarks' config: loopback listeners and the shared bench catalog.
const CONFIG: &str = concat!(
    "[server]\ngrpc_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n\n",
    include_str!("catalog.toml")
);

// The control plane's allocator, so in-process figures match the binary.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

struct Opts {
    grpc: Option<String>,
    ids: u64,
    sessions: Vec<u64>,
    secs: f64,
    concurrency: Vec<usize>,
    prefix: String,
    cache_mb: Option<u64>,
}

fn opts() -> Opts {
    let mut o = Opts {
        grpc: None,
        ids: 10_000,
        sessions: vec![10_000],
        secs: 5.0,
        concurrency: vec![1, 32],
        prefix: "bench-".into(),
        cache_mb: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().expect("flag needs a value");
        match a.as_str() {
            "--grpc" => o.grpc = Some(val()),
            "--ids" => o.ids = val().parse().expect("--ids"),
            "--sessions" => {
                o.sessions = val()
                    .split(',')
                    .map(|s| s.parse().expect("--sessions"))
                    .collect()
            }
            "--secs" => o.secs = val().parse().expect("--secs"),
            "--concurrency" => {
                o.concurrency = val()
                    .split(',')
                    .map(|s| s.parse().expect("--concurrency"))
                    .collect()
            }
            "--id-prefix" => o.prefix = val(),
            "--cache-mb" => o.cache_mb = Some(val().parse().expect("--cache-mb")),
            _ => {} // `--bench` from cargo, filters
        }
    }
    o
}

fn request(conversation_id: String) -> RouteRequest {
    RouteRequest {
        tenant: keel::DEFAULT_TENANT.into(),
        session_source: if conversation_id.is_empty() {
            pb::SessionSource::None as i32
        } else {
            pb::SessionSource::Header as i32
        },
        conversation_id,
        profile: "AGENT".into(),
        model: "auto".into(),
        features: Some(RequestFeatures {
            estimated_prompt_tokens: 1800,
            uses_tools: false,
            has_images: false,
            max_output_tokens: 1024,
            stream: false,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Same scatter as keel-loadgen: consecutive calls hit unrelated sessions.
fn scatter(i: u64, n: u64) -> u64 {
    let mut x = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (x ^ (x >> 31)) % n.max(1)
}

fn uuid_like(i: u64) -> String {
    format!("00000000-0000-7000-8000-{i:012x}")
}

fn pct(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn report(case: &str, sessions: u64, concurrency: usize, mut lat_us: Vec<u32>, elapsed: Duration) {
    lat_us.sort_unstable();
    println!(
        "{}",
        serde_json::json!({
            "case": case,
            "sessions": sessions,
            "concurrency": concurrency,
            "n": lat_us.len(),
            "p50_us": pct(&lat_us, 50.0),
            "p99_us": pct(&lat_us, 99.0),
            // The tail that moves the mean: a queue or lock wait shows
            // here long before it reaches p99.
            "p999_us": pct(&lat_us, 99.9),
            "max_us": lat_us.last().copied().unwrap_or(0),
            "mean_us": lat_us.iter().map(|&l| u64::from(l)).sum::<u64>() / (lat_us.len().max(1) as u64),
            "decisions_per_sec": lat_us.len() as f64 / elapsed.as_secs_f64(),
        })
    );
}

fn main() {
    let o = opts();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match &o.grpc {
        Some(url) => rt.block_on(grpc(&o, url.clone())),
        None => rt.block_on(in_process(&o)),
    }
}

/// `RouterState::route` directly: no network, no protobuf.
async fn in_process(o: &Opts) {
    for &n in &o.sessions {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = config::parse(CONFIG).expect("bench config");
        cfg.store.path = dir.path().to_owned();
        if let Some(mb) = o.cache_mb {
            cfg.store.cache_capacity_bytes = mb * 1024 * 1024;
        }
        let store: Arc<dyn SessionStore> = Arc::new(
            SledStore::open(
                dir.path(),
                cfg.store.cache_capacity_bytes,
                cfg.store.session_idle_ttl,
            )
            .expect("open store"),
        );
        let (state, writer) = RouterState::new(cfg, Arc::clone(&store));
        let state = Arc::new(state);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let writer = tokio::spawn(writer.run(async move {
            let _ = stopped.await;
        }));
        // Fill: what a first AGENT turn leaves (session + decision), written
        // straight to the store; one flush at the end.
        let filled = Instant::now();
        let now = now_ms();
        for i in 0..n {
            let key = SessionKey::new(keel::DEFAULT_TENANT, &format!("{}{i}", o.prefix));
            store
                .update(&key, now, &mut |_| Session {
                    pinned_model: Some("strong-1".into()),
                    profile: "AGENT".into(),
                    created_ms: now,
                    last_seen_ms: now,
                    turns: 1,
                    ..Default::default()
                })
                .expect("update");
            store
                .record_decision(
                    &key,
                    &DecisionEntry {
                        decision_id: uuid_like(i),
                        turn: 1,
                        kind: pb::DecisionKind::Initialize as i32,
                        model: "strong-1".into(),
                        provider: "alpha".into(),
                        reason: "pinned at turn 1 (bench)".into(),
                        at_ms: now,
                        events: Vec::new(),
                        result: None,
                    },
                )
                .expect("record");
        }
        store.flush().await.expect("flush");
        eprintln!(
            "route bench: {n} sessions stored in {:.1}s",
            filled.elapsed().as_secs_f64()
        );
        let budget = Duration::from_secs_f64(o.secs);
        for case in ["retain", "unpinned"] {
            let mut lat = Vec::new();
            let start = Instant::now();
            let mut i = 0u64;
            while start.elapsed() < budget && i < 5_000_000 {
                let id = match case {
                    "retain" => format!("{}{}", o.prefix, scatter(i, n)),
                    _ => String::new(),
                };
                let req = request(id);
                let t = Instant::now();
                let d = state.route(req).await.expect("route");
                lat.push(t.elapsed().as_micros() as u32);
                black_box(d);
                i += 1;
            }
            report(&format!("in-process {case}"), n, 1, lat, start.elapsed());
        }
        // New conversations: the pin is flushed before Route returns.
        let mut lat = Vec::new();
        let start = Instant::now();
        let mut i = 0u64;
        while start.elapsed() < budget && i < 100_000 {
            let req = request(format!("{}new-{i}", o.prefix));
            let t = Instant::now();
            black_box(state.route(req).await.expect("route"));
            lat.push(t.elapsed().as_micros() as u32);
            i += 1;
        }
        report("in-process initialize", n, 1, lat, start.elapsed());
        let _ = stop.send(());
        writer.await.expect("decision writer");
    }
}

/// Closed loop over gRPC on one channel, `c` calls in flight: unary `Route`
/// (case `grpc ...`) and the sidecar's own client multiplexing them on one
/// `RouteStream` (case `grpc-stream ...`).
/// `url` may list several control planes (comma-separated replicas on one
/// store): the calls in flight are spread over them.
async fn grpc(o: &Opts, url: String) {
    let mut clients = Vec::new();
    for url in url.split(',') {
        let channel = tonic::transport::Channel::from_shared(url.to_owned())
            .expect("url")
            .tcp_nodelay(true)
            .connect()
            .await
            .expect("connect to the control plane");
        let client = RouterClient::with_interceptor(channel, Default::default());
        let stream = Arc::new(RouteStream::new(client.clone(), RouteRpc::Stream));
        clients.push((client, stream));
    }
    for &c in &o.concurrency {
        for (rpc, case) in [
            (RouteRpc::Unary, "retain"),
            (RouteRpc::Unary, "unpinned"),
            (RouteRpc::Stream, "retain"),
            (RouteRpc::Stream, "unpinned"),
        ] {
            let budget = Duration::from_secs_f64(o.secs);
            let start = Instant::now();
            let tasks: Vec<_> = (0..c)
                .map(|t| {
                    let (client, stream) = &clients[t % clients.len()];
                    let (mut client, prefix, ids) = (client.clone(), o.prefix.clone(), o.ids);
                    let stream = Arc::clone(stream);
                    tokio::spawn(async move {
                        let mut lat = Vec::new();
                        let mut i = t as u64 * 1_000_003;
                        while start.elapsed() < budget && lat.len() < 2_000_000 {
                            let id = match case {
                                "retain" => format!("{prefix}{}", scatter(i, ids)),
                                _ => String::new(),
                            };
                            let t0 = Instant::now();
                            match rpc {
                                RouteRpc::Unary => {
                                    drop(client.route(request(id)).await.expect("route"))
                                }
                                RouteRpc::Stream => {
                                    // The bench measures; it never gives up on an answer.
                                    let wait = keel_data_plane::route_stream::Wait {
                                        silence: Duration::from_secs(30),
                                        longest: Duration::from_secs(30),
                                    };
                                    drop(stream.route(request(id), wait).await.expect("route"))
                                }
                            }
                            lat.push(t0.elapsed().as_micros() as u32);
                            i += 1;
                        }
                        lat
                    })
                })
                .collect();
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.expect("task"));
            }
            let name = match rpc {
                RouteRpc::Unary => "grpc",
                RouteRpc::Stream => "grpc-stream",
            };
            report(&format!("{name} {case}"), o.ids, c, all, start.elapsed());
        }
    }
}
