//! What sled 0.34 itself holds in memory once a store's keys are read at
//! random, as the control plane reads sessions: no Keel code, sled opened as
//! the store opens it (8 MB cache, the control plane's jemalloc settings).
//! A child process fills the store; this one opens it and prints its RSS
//! after opening and while reading.
//! Harness-free, never run by `cargo test`:
//!   cargo bench -p keel-control-plane --bench sled_memory -- [KEYS] [VALUE_BYTES] [READS] [CACHE_MB] [--rewrite]
//! (default 1,000,000 keys of 150 bytes, about a stored session, 1,000,000 reads and
//! sled's cache at 8 MB as in the store;
//! `--rewrite` writes each key read back).

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn rss_mb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

fn open(path: &std::path::Path, cache_mb: u64) -> sled::Tree {
    let db = sled::Config::new()
        .path(path)
        .cache_capacity(cache_mb << 20)
        .open()
        .expect("open sled");
    db.open_tree("sessions").expect("open tree")
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let keys = args.first().copied().unwrap_or(1_000_000);
    let value_len = args.get(1).copied().unwrap_or(150) as usize;
    let reads = args.get(2).copied().unwrap_or(1_000_000);
    let cache_mb = args.get(3).copied().unwrap_or(8);
    let rewrite = std::env::args().any(|a| a == "--rewrite");
    if let Ok(path) = std::env::var("SLED_MEMORY_FILL") {
        // The child: fills the store and exits, so the reader starts clean.
        let tree = open(std::path::Path::new(&path), cache_mb);
        let value = vec![7u8; value_len];
        for k in 0..keys {
            tree.insert(k.to_be_bytes(), value.as_slice())
                .expect("insert");
        }
        tree.flush().expect("flush");
        println!("filled {keys} keys of {value_len} bytes");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let filled = std::process::Command::new(std::env::current_exe().expect("own path"))
        .args(std::env::args().skip(1))
        .env("SLED_MEMORY_FILL", dir.path())
        .status()
        .expect("run the filler");
    assert!(filled.success(), "filling failed");
    let tree = open(dir.path(), cache_mb);
    println!("opened: RSS {} MB", rss_mb());
    // xorshift: uniform keys without a dependency.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut peak = 0;
    for i in 1..=reads {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let key = (x % keys).to_be_bytes();
        let got = tree.get(key).expect("read").expect("every key was written");
        if rewrite {
            // As the store's write pass does with a changed session.
            tree.insert(key, got).expect("write");
        }
        if i % (reads / 10).max(1) == 0 {
            let rss = rss_mb();
            peak = peak.max(rss);
            println!("{i} random reads: RSS {rss} MB");
        }
    }
    println!(
        "peak while reading{} {peak} MB",
        if rewrite { " and rewriting" } else { "" }
    );
}
