//! `keel-loadgen`: a small HTTP/1.1 load generator for `scripts/bench.sh`.
//!
//! Two modes:
//! * `--rate R` — open loop: request `i` is due at `start + i/R`, whatever
//!   happened to earlier ones, and its latency is measured from that due
//!   time (not from when it was actually sent), so a stalled target cannot
//!   hide its stall by slowing the generator down (coordinated omission).
//!   Due times are paced by a dedicated OS thread (tokio's timer has 1 ms
//!   granularity, as coarse as the figures being measured).
//! * `--connections C` — closed loop, max throughput: C connections, each
//!   sends its next request as soon as the previous answer has been read.
//!
//! Every run is bounded in time (`--duration`, after `--warmup`) and in
//! count (`--max-requests`). Prints one JSON line of results on stdout.
//! With `--stream` it also reports time to the first body chunk.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::{Request, client::conn::http1::SendRequest, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// HTTP load generator (open-loop fixed rate or closed-loop max throughput).
#[derive(Parser, Debug)]
#[command(name = "keel-loadgen")]
struct Args {
    /// Target URL (http only), e.g. `http://127.0.0.1:8080/v1/chat/completions`.
    #[arg(long)]
    url: String,
    /// JSON request body file (POST); without it, GET.
    #[arg(long)]
    body_file: Option<std::path::PathBuf>,
    /// Extra header `name: value` (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Send `X-Conversation-ID: <prefix><n>` with `n` spread over this many ids (0: none).
    #[arg(long, default_value_t = 0)]
    conversation_ids: u64,
    /// Prefix of conversation ids.
    #[arg(long, default_value = "bench-")]
    id_prefix: String,
    /// Open loop at this many requests per second.
    #[arg(long, conflicts_with = "connections")]
    rate: Option<u32>,
    /// Closed loop on this many connections (max throughput).
    #[arg(long)]
    connections: Option<usize>,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds run before measuring (connections warm, caches filled).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Hard bound on requests sent.
    #[arg(long, default_value_t = 2_000_000)]
    max_requests: u64,
    /// Open loop: most requests in flight; a due request beyond it counts as an error.
    #[arg(long, default_value_t = 1024)]
    max_in_flight: usize,
    /// Report time to the first body chunk as well (streaming responses).
    #[arg(long)]
    stream: bool,
    /// Label echoed in the JSON output.
    #[arg(long, default_value = "")]
    label: String,
    /// Worker threads of the generator's runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Agent-shaped traffic: the bodies of one conversation's turns, in
    /// order (`*.json` in this directory, sorted by name). Request `i` is
    /// turn `(i / conversations) % turns` of conversation `i % conversations`
    /// (`X-Conversation-ID: <prefix><conversation>-<round>`): every
    /// conversation takes its turns in sequence, its history growing, and
    /// starts over as a new conversation after the last turn.
    #[arg(long, requires = "conversations", conflicts_with = "body_file")]
    turns_dir: Option<std::path::PathBuf>,
    /// Conversations taking turns at once (with `--turns-dir`).
    #[arg(long, default_value_t = 0)]
    conversations: u64,
}

/// Answers marked `X-Keel-Degraded: true`, and answers 429 (shed), over the
/// whole run.
static DEGRADED: AtomicUsize = AtomicUsize::new(0);
static SHED: AtomicUsize = AtomicUsize::new(0);

/// One finished request, in microseconds.
#[derive(Clone, Copy)]
struct Sample {
    latency_us: u32,
    first_chunk_us: u32,
    ok: bool,
}

struct Target {
    addr: SocketAddr,
    authority: String,
    path: String,
    body: Option<Bytes>,
    headers: Vec<(header::HeaderName, header::HeaderValue)>,
    ids: u64,
    id_prefix: String,
    /// Agent turns (`--turns-dir`) and how many conversations take them.
    turns: Vec<Bytes>,
    conversations: u64,
}

impl Target {
    fn request(&self, n: u64) -> Result<Request<Full<Bytes>>> {
        if !self.turns.is_empty() {
            let k = self.turns.len() as u64;
            let conversation = n % self.conversations;
            let turn = (n / self.conversations) % k;
            let round = n / (self.conversations * k);
            let mut b = Request::builder()
                .method("POST")
                .uri(&self.path)
                .header(header::HOST, &self.authority)
                .header(header::CONTENT_TYPE, "application/json")
                .header(
                    "x-conversation-id",
                    format!("{}{conversation}-{round}", self.id_prefix),
                );
            for (k, v) in &self.headers {
                b = b.header(k, v);
            }
            return Ok(b.body(Full::new(self.turns[turn as usize].clone()))?);
        }
        let method = if self.body.is_some() { "POST" } else { "GET" };
        let mut b = Request::builder()
            .method(method)
            .uri(&self.path)
            .header(header::HOST, &self.authority);
        if self.body.is_some() {
            b = b.header(header::CONTENT_TYPE, "application/json");
        }
        for (k, v) in &self.headers {
            b = b.header(k, v);
        }
        if self.ids > 0 {
            // Scatter ids so consecutive requests hit unrelated sessions.
            let id = splitmix(n) % self.ids;
            b = b.header("x-conversation-id", format!("{}{id}", self.id_prefix));
        }
        Ok(b.body(Full::new(self.body.clone().unwrap_or_default()))?)
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Sends one request and reads the whole answer; times are from `t0`.
async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
    t0: Instant,
) -> Result<(Duration, Duration)> {
    sender.ready().await?;
    let resp = sender.send_request(req).await?;
    let ok = resp.status().is_success();
    if resp.status() == hyper::StatusCode::TOO_MANY_REQUESTS {
        SHED.fetch_add(1, Ordering::Relaxed);
    }
    if resp
        .headers()
        .get("x-keel-degraded")
        .is_some_and(|v| v == "true")
    {
        DEGRADED.fetch_add(1, Ordering::Relaxed);
    }
    let mut body = resp.into_body();
    let mut first = None;
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        if first.is_none() && frame.data_ref().is_some_and(|d| !d.is_empty()) {
            first = Some(t0.elapsed());
        }
    }
    let total = t0.elapsed();
    if !ok {
        bail!("status not 2xx");
    }
    Ok((total, first.unwrap_or(total)))
}

fn us(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let uri: hyper::Uri = args.url.parse().context("--url")?;
    if uri.scheme_str() != Some("http") {
        bail!("--url must be http://");
    }
    let authority = uri
        .authority()
        .context("--url needs host:port")?
        .to_string();
    let addr: SocketAddr = {
        use std::net::ToSocketAddrs;
        let port = uri.port_u16().unwrap_or(80);
        (uri.host().unwrap_or("127.0.0.1"), port)
            .to_socket_addrs()?
            .next()
            .context("resolve --url")?
    };
    let mut headers = Vec::new();
    for h in &args.headers {
        let (k, v) = h.split_once(':').context("--header wants `name: value`")?;
        headers.push((k.trim().parse()?, v.trim().parse()?));
    }
    let body = match &args.body_file {
        Some(p) => Some(Bytes::from(std::fs::read(p).context("--body-file")?)),
        None => None,
    };
    let target = Arc::new(Target {
        addr,
        authority,
        path: uri
            .path_and_query()
            .map_or("/".to_owned(), |p| p.as_str().to_owned()),
        body,
        headers,
        ids: args.conversation_ids,
        id_prefix: args.id_prefix.clone(),
        turns: match &args.turns_dir {
            Some(dir) => read_turns(dir)?,
            None => Vec::new(),
        },
        conversations: args.conversations.max(1),
    });
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    let warmup = Duration::from_secs_f64(args.warmup);
    let duration = Duration::from_secs_f64(args.duration);
    let (samples, mode) = match (args.rate, args.connections) {
        (Some(rate), _) => (
            runtime.block_on(open_loop(&args, target, rate, warmup, duration))?,
            format!("rate={rate}"),
        ),
        (None, Some(c)) => (
            runtime.block_on(closed_loop(&args, target, c, warmup, duration))?,
            format!("connections={c}"),
        ),
        (None, None) => bail!("give --rate or --connections"),
    };
    print_report(&args, &mode, samples, duration);
    Ok(())
}

/// Open loop: a pacing thread releases each request at its due time.
async fn open_loop(
    args: &Args,
    target: Arc<Target>,
    rate: u32,
    warmup: Duration,
    duration: Duration,
) -> Result<Vec<Sample>> {
    let period = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let total = warmup + duration;
    let max_requests = args.max_requests;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
    let start = Instant::now() + Duration::from_millis(50);
    let pacer = std::thread::spawn(move || {
        let mut i: u64 = 0;
        while i < max_requests {
            let due = start + period.mul_f64(i as f64);
            if due.duration_since(start) >= total {
                break;
            }
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if tx.send((i, due)).is_err() {
                break;
            }
            i += 1;
        }
    });
    let pool: Arc<Mutex<Vec<SendRequest<Full<Bytes>>>>> = Arc::default();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let measure_from = start + warmup;
    let mut tasks = tokio::task::JoinSet::new();
    while let Some((i, due)) = rx.recv().await {
        let measured = due >= measure_from;
        if in_flight.load(Ordering::Relaxed) >= args.max_in_flight {
            if measured {
                samples.lock().expect("lock").push(Sample {
                    latency_us: 0,
                    first_chunk_us: 0,
                    ok: false,
                });
            }
            continue;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        let (pool, in_flight, samples, target) = (
            Arc::clone(&pool),
            Arc::clone(&in_flight),
            Arc::clone(&samples),
            Arc::clone(&target),
        );
        tasks.spawn(async move {
            let conn = pool.lock().expect("lock").pop();
            let result = async {
                let mut sender = match conn {
                    Some(c) => c,
                    None => connect(target.addr).await?,
                };
                let times = exchange(&mut sender, target.request(i)?, due).await;
                if times.is_ok() {
                    pool.lock().expect("lock").push(sender);
                }
                times
            }
            .await;
            in_flight.fetch_sub(1, Ordering::Relaxed);
            if measured {
                let s = match result {
                    Ok((total, first)) => Sample {
                        latency_us: us(total),
                        first_chunk_us: us(first),
                        ok: true,
                    },
                    Err(_) => Sample {
                        latency_us: 0,
                        first_chunk_us: 0,
                        ok: false,
                    },
                };
                samples.lock().expect("lock").push(s);
            }
        });
        // Reap finished tasks so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    let _ = pacer.join();
    // In-flight requests get a bounded time to finish.
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    let out = samples.lock().expect("lock").clone();
    Ok(out)
}

/// Closed loop: `c` connections, each back to back.
async fn closed_loop(
    args: &Args,
    target: Arc<Target>,
    c: usize,
    warmup: Duration,
    duration: Duration,
) -> Result<Vec<Sample>> {
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let max_requests = args.max_requests;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..c {
        let (target, counter) = (Arc::clone(&target), Arc::clone(&counter));
        tasks.spawn(async move {
            let mut out = Vec::new();
            let mut sender = None;
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let i = counter.fetch_add(1, Ordering::Relaxed);
                if i >= max_requests {
                    break;
                }
                let result = async {
                    let mut s = match sender.take() {
                        Some(s) => s,
                        None => connect(target.addr).await?,
                    };
                    let t = exchange(&mut s, target.request(i)?, now).await?;
                    sender = Some(s);
                    anyhow::Ok(t)
                }
                .await;
                // Count only requests sent and finished inside the window.
                if now >= measure_from && Instant::now() <= end {
                    out.push(match result {
                        Ok((total, first)) => Sample {
                            latency_us: us(total),
                            first_chunk_us: us(first),
                            ok: true,
                        },
                        Err(_) => Sample {
                            latency_us: 0,
                            first_chunk_us: 0,
                            ok: false,
                        },
                    });
                }
                if result_failed(&out) {
                    // A failing target: do not spin on it.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            out
        });
    }
    let mut all = Vec::new();
    let bound = end + Duration::from_secs(10);
    while let Ok(Some(joined)) = tokio::time::timeout_at(bound.into(), tasks.join_next()).await {
        all.extend(joined.unwrap_or_default());
    }
    tasks.abort_all();
    Ok(all)
}

/// The `*.json` files of `dir`, sorted by name.
fn read_turns(dir: &std::path::Path) -> Result<Vec<Bytes>> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .context("--turns-dir")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        bail!("--turns-dir has no *.json");
    }
    paths
        .iter()
        .map(|p| Ok(Bytes::from(std::fs::read(p)?)))
        .collect()
}

fn result_failed(out: &[Sample]) -> bool {
    out.last().is_some_and(|s| !s.ok)
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn print_report(args: &Args, mode: &str, samples: Vec<Sample>, duration: Duration) {
    let errors = samples.iter().filter(|s| !s.ok).count();
    let mut lat: Vec<u32> = samples
        .iter()
        .filter(|s| s.ok)
        .map(|s| s.latency_us)
        .collect();
    let mut first: Vec<u32> = samples
        .iter()
        .filter(|s| s.ok)
        .map(|s| s.first_chunk_us)
        .collect();
    lat.sort_unstable();
    first.sort_unstable();
    let ok = lat.len();
    let report = serde_json::json!({
        "label": args.label,
        "mode": mode,
        "ok": ok,
        "errors": errors,
        "rps": ok as f64 / duration.as_secs_f64(),
        "p50_us": percentile(&lat, 50.0),
        "p90_us": percentile(&lat, 90.0),
        "p99_us": percentile(&lat, 99.0),
        "max_us": lat.last().copied().unwrap_or(0),
        "ttfc_p50_us": if args.stream { percentile(&first, 50.0) } else { 0 },
        "ttfc_p90_us": if args.stream { percentile(&first, 90.0) } else { 0 },
        "ttfc_p99_us": if args.stream { percentile(&first, 99.0) } else { 0 },
        "p999_us": percentile(&lat, 99.9),
        "degraded": DEGRADED.load(Ordering::Relaxed),
        "shed_429": SHED.load(Ordering::Relaxed),
    });
    println!("{report}");
}
