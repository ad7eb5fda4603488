//! Runs the real binaries for end-to-end tests: each process gets its own
//! ports (bound as port 0 and read back from the binary's ready line), logs
//! to a file in the test's temp dir, and is killed when dropped. Readiness is
//! a poll of `/healthz`, never a sleep.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

/// Path of a workspace binary next to the running test executable
/// (`target/<profile>/NAME`). The test command builds them first.
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` before the tests (scripts/test.sh does)",
        path.display()
    );
    path
}

/// A running child process with its ready line parsed.
struct Proc {
    child: Child,
    ready: HashMap<String, String>,
    log: PathBuf,
}

impl Proc {
    fn spawn(mut cmd: Command, log: PathBuf, ready_prefix: &str) -> Result<Self> {
        let log_file = std::fs::File::create(&log)?;
        cmd.stdout(Stdio::piped())
            .stderr(log_file)
            .stdin(Stdio::null());
        let mut child = cmd.spawn().context("spawn")?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        let prefix = ready_prefix.to_owned();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !sent && line.starts_with(&prefix) {
                    let _ = tx.send(line);
                    sent = true;
                }
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let logs = std::fs::read_to_string(&log).unwrap_or_default();
                bail!(
                    "process did not print its ready line; exit {:?}; log:\n{logs}",
                    child.try_wait()
                );
            }
        };
        let ready = line
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Ok(Self { child, ready, log })
    }

    fn addr(&self, key: &str) -> SocketAddr {
        self.ready[key].parse().expect("ready line address")
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn signal(&self, sig: &str) -> Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()?;
        if !status.success() {
            bail!("kill -{sig} failed");
        }
        if sig == "STOP" {
            self.wait_stopped()?;
        }
        Ok(())
    }

    /// `kill` returns once SIGSTOP is queued, while a thread running on
    /// another core goes on until its next tick (it answered a `Route` 6 ms
    /// later): wait until Linux shows every thread stopped (`T`).
    fn wait_stopped(&self) -> Result<()> {
        let tasks = PathBuf::from(format!("/proc/{}/task", self.child.id()));
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let Ok(entries) = std::fs::read_dir(&tasks) else {
                return Ok(()); // not Linux: best effort
            };
            let stopped = entries.filter_map(|e| e.ok()).all(|e| {
                std::fs::read_to_string(e.path().join("stat"))
                    .ok()
                    .and_then(|s| {
                        s.rsplit_once(')')
                            .map(|(_, r)| r.trim_start().starts_with('T'))
                    })
                    .unwrap_or(true) // the thread has gone
            });
            if stopped {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("process did not stop");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn terminate(&mut self) -> Result<std::process::ExitStatus> {
        self.signal("TERM")?;
        self.wait(Duration::from_secs(40))
    }

    fn wait(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait()? {
                return Ok(s);
            }
            if Instant::now() > deadline {
                self.kill9();
                bail!("process did not exit in {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Polls `http://addr/healthz` until it answers 200.
pub async fn wait_healthy(addr: SocketAddr) -> Result<()> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(format!("http://{addr}/healthz")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{addr} never became healthy");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A running `keel-control-plane`.
pub struct ControlPlane {
    proc: Proc,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub config_path: PathBuf,
}

impl ControlPlane {
    /// Writes `config` (TOML) to `dir/keel.toml` and starts the binary on it.
    /// Use `grpc_listen = "127.0.0.1:0"` for an ephemeral port.
    pub async fn start(dir: &Path, config: &str) -> Result<Self> {
        Self::start_with_env(dir, config, &[]).await
    }

    /// [`ControlPlane::start`] with extra environment (e.g. `RUST_LOG`).
    pub async fn start_with_env(dir: &Path, config: &str, env: &[(&str, &str)]) -> Result<Self> {
        let config_path = dir.join("keel.toml");
        std::fs::write(&config_path, config)?;
        let mut cmd = Command::new(bin_path("keel-control-plane"));
        cmd.arg("--config")
            .arg(&config_path)
            .env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let n = std::fs::read_dir(dir)?.count();
        let proc = Proc::spawn(
            cmd,
            dir.join(format!("control-plane-{n}.log")),
            "keel-control-plane ready",
        )?;
        let (grpc, http) = (proc.addr("grpc"), proc.addr("http"));
        wait_healthy(http).await?;
        Ok(Self {
            proc,
            grpc,
            http,
            config_path,
        })
    }

    /// The gRPC URL sidecars connect to.
    pub fn url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// `kill -9`: no shutdown, no flush.
    pub fn kill9(&mut self) {
        self.proc.kill9();
    }

    /// SIGTERM and wait for exit.
    pub fn terminate(&mut self) -> Result<std::process::ExitStatus> {
        self.proc.terminate()
    }

    /// Sends a signal (`TERM`, `STOP`, `CONT`, …) without waiting.
    pub fn signal(&self, sig: &str) -> Result<()> {
        self.proc.signal(sig)
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.proc.child.id()
    }

    /// The process's log so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.proc.log).unwrap_or_default()
    }
}

/// A running `keel-sidecar`.
pub struct Sidecar {
    proc: Proc,
    pub addr: SocketAddr,
}

impl Sidecar {
    /// Starts the sidecar against `control_plane` with extra flags and env
    /// (provider keys as `KEEL_KEY_*`).
    pub async fn start(
        dir: &Path,
        control_plane: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let mut cmd = Command::new(bin_path("keel-sidecar"));
        cmd.arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--control-plane")
            .arg(control_plane)
            .args(args)
            .env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let n = std::fs::read_dir(dir)?.count();
        let proc = Proc::spawn(
            cmd,
            dir.join(format!("sidecar-{n}.log")),
            "keel-sidecar ready",
        )?;
        let addr = proc.addr("listen");
        wait_healthy(addr).await?;
        Ok(Self { proc, addr })
    }

    /// Base URL of the sidecar's HTTP API.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        self.proc.kill9();
    }

    /// SIGTERM and wait for exit.
    pub fn terminate(&mut self) -> Result<std::process::ExitStatus> {
        self.proc.terminate()
    }

    /// Sends a signal (`TERM`, `STOP`, `CONT`, …) without waiting.
    pub fn signal(&self, sig: &str) -> Result<()> {
        self.proc.signal(sig)
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        self.proc.wait(timeout)
    }

    /// The process's log so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.proc.log).unwrap_or_default()
    }
}
