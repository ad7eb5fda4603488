//! A real `redis-server` (Debian's package, installed by
//! `scripts/setup-redis.sh`) on an ephemeral port, with its data in the
//! test's directory, killed when dropped. Readiness is a poll of `PING`.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

/// A running `redis-server`.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    args: Vec<String>,
}

/// The server binary: `$REDIS_SERVER`, else `redis-server` on the PATH.
fn binary() -> String {
    std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into())
}

impl RedisServer {
    /// Starts a server with its files in `dir`: AOF on, `appendfsync
    /// always` (acknowledged writes survive a restart), no RDB snapshots,
    /// then `args` (`["--appendfsync", "everysec"]` overrides).
    pub fn start(dir: &Path, args: &[&str]) -> Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut server = Self {
            child: None,
            port,
            dir: dir.to_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
        };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let log = std::fs::File::create(self.dir.join("redis.log"))?;
        let child = Command::new(binary())
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.args)
            .stdout(log)
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot run {}: run scripts/setup-redis.sh", binary()))?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.ping() {
                return Ok(());
            }
            if let Some(c) = &mut self.child
                && let Some(status) = c.try_wait()?
            {
                let log = std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
                bail!("redis-server exited with {status}; log:\n{log}");
            }
            if Instant::now() > deadline {
                bail!("redis-server on port {} never answered PING", self.port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts a server that also listens with TLS on another port, its
    /// certificate signed by `pki` (files in `dir`); clients need no
    /// certificate. Returns the server and its `rediss://` URL.
    pub fn start_tls(dir: &Path, pki: &crate::Pki) -> Result<(Self, String)> {
        std::fs::create_dir_all(dir)?;
        let (cert, key) = pki.issue(dir, "redis");
        let tls_port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let path = |p: &Path| p.to_string_lossy().into_owned();
        let port = tls_port.to_string();
        let (cert, key, ca) = (path(&cert), path(&key), path(&pki.ca));
        let args = [
            "--tls-port",
            &port,
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            "no",
        ];
        let server = Self::start(&dir.join("data"), &args)?;
        Ok((server, format!("rediss://127.0.0.1:{tls_port}/0")))
    }

    /// A Sentinel watching the primary on `master_port` as `name` (quorum 1,
    /// down after 300 ms), its config and log in `dir`.
    pub fn start_sentinel(dir: &Path, name: &str, master_port: u16) -> Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        std::fs::create_dir_all(dir)?;
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor {name} 127.0.0.1 {master_port} 1\n\
                 sentinel down-after-milliseconds {name} 300\n\
                 sentinel failover-timeout {name} 3000\n",
                dir.display()
            ),
        )?;
        let log = std::fs::File::create(dir.join("redis.log"))?;
        let child = Command::new(binary())
            .arg(&conf)
            .arg("--sentinel")
            .stdout(log)
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot run {} --sentinel", binary()))?;
        let mut server = Self {
            child: Some(child),
            port,
            dir: dir.to_owned(),
            args: Vec::new(),
        };
        server.wait_ready()?;
        Ok(server)
    }

    /// Whether the server answers `PING`.
    pub fn ping(&self) -> bool {
        self.command("PING").is_ok_and(|r| r.starts_with("+PONG"))
    }

    /// Sends one inline command and returns the raw reply (first read).
    pub fn command(&self, line: &str) -> Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(format!("{line}\r\n").as_bytes())?;
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// `redis://127.0.0.1:PORT/0`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// `kill -9`: no save, no goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port and files.
    pub fn restart(&mut self) -> Result<()> {
        self.kill9();
        self.spawn()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill9();
    }
}
