//! [`RedisServer`]: a real `redis-server` child process on a free loopback
//! port, in its own temporary directory, with an append-only file so that a
//! stop and start keeps its data. Tests stop it to inject an outage and
//! start it again on the same port. [`RedisServer::command`] is a tiny
//! synchronous RESP client for assertions. Used by wagate's integration
//! tests and benchmarks.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// How long a start may take before the test fails. A restart loads the
/// whole AOF first (answering `LOADING`): on a loaded 2-core machine the
/// chaos run's 30,000 keys once took 7.5 s of a 15 s patience, and a later
/// restart ran past it.
const READY_PATIENCE: Duration = Duration::from_secs(90);

/// How long a `SHUTDOWN` may take before the process is killed.
const STOP_PATIENCE: Duration = Duration::from_secs(15);

/// A reply from Redis, as [`RedisServer::command`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<Resp>),
}

impl Resp {
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Resp::Int(n) => Some(*n),
            _ => None,
        }
    }

    /// A simple or bulk string as text.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Resp::Simple(s) => Some(s.clone()),
            Resp::Bulk(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    /// The texts of an array reply (empty for anything else).
    pub fn as_strings(&self) -> Vec<String> {
        match self {
            Resp::Array(items) => items.iter().filter_map(Resp::as_text).collect(),
            _ => Vec::new(),
        }
    }
}

pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    /// Extra command-line arguments (cluster mode, sentinel mode).
    extra: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts `redis-server` on a free port and waits until it answers PING.
    ///
    /// # Panics
    /// When `redis-server` is not installed or does not come up.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Like [`RedisServer::start`], with extra `redis-server` arguments.
    pub fn start_with(extra: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "wagate-redis-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("the temp dir is writable");
        let mut server = Self {
            port: free_port(),
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        server.start_again();
        server
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Starts the server again on the same port and directory (its data is
    /// back, from the append-only file). Waits until it answers.
    pub fn start_again(&mut self) {
        if self.is_running() {
            return;
        }
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--protected-mode", "no"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--logfile", "redis.log"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}): install it (apt-get install redis-server)")
            });
        self.child = Some(child);
        let deadline = Instant::now() + READY_PATIENCE;
        while Instant::now() < deadline {
            if self.try_command(&["PING"]).ok() == Some(Resp::Simple("PONG".into())) {
                return;
            }
            if !self.is_running() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let log = std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
        panic!("redis-server on port {} did not come up:\n{log}", self.port);
    }

    /// The directory the server runs in (its config and data files).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Stops the server the way an outage looks to clients (connections
    /// refused) and waits for the process to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = self.try_command(&["SHUTDOWN", "NOSAVE"]);
            let deadline = Instant::now() + STOP_PATIENCE;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends one command and returns the reply.
    ///
    /// # Panics
    /// When the server cannot be reached.
    pub fn command(&self, args: &[&str]) -> Resp {
        self.try_command(args)
            .unwrap_or_else(|e| panic!("redis command {args:?} failed: {e}"))
    }

    pub fn try_command(&self, args: &[&str]) -> std::io::Result<Resp> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            request.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            request.extend_from_slice(a.as_bytes());
            request.extend_from_slice(b"\r\n");
        }
        stream.write_all(&request)?;
        read_resp(&mut BufReader::new(stream))
    }
}

fn read_resp(r: &mut impl BufRead) -> std::io::Result<Resp> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let line = line.trim_end_matches("\r\n");
    let (kind, rest) = line.split_at(1.min(line.len()));
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, line.to_owned());
    match kind {
        "+" => Ok(Resp::Simple(rest.to_owned())),
        "-" => Ok(Resp::Error(rest.to_owned())),
        ":" => rest.parse().map(Resp::Int).map_err(|_| bad()),
        "$" => {
            let len: i64 = rest.parse().map_err(|_| bad())?;
            if len < 0 {
                return Ok(Resp::Nil);
            }
            let mut buf = vec![0; len as usize + 2];
            r.read_exact(&mut buf)?;
            buf.truncate(len as usize);
            Ok(Resp::Bulk(buf))
        }
        "*" => {
            let len: i64 = rest.parse().map_err(|_| bad())?;
            if len < 0 {
                return Ok(Resp::Nil);
            }
            (0..len)
                .map(|_| read_resp(r))
                .collect::<Result<_, _>>()
                .map(Resp::Array)
        }
        _ => Err(bad()),
    }
}

/// A Redis Cluster of `masters` nodes (no replicas), slots spread by
/// `redis-cli --cluster create`.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start(masters: usize) -> Self {
        let nodes: Vec<RedisServer> = (0..masters)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli is installed with redis-server");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let deadline = Instant::now() + READY_PATIENCE;
        while Instant::now() < deadline {
            let ok = nodes.iter().all(|n| {
                n.command(&["CLUSTER", "INFO"])
                    .as_text()
                    .is_some_and(|t| t.contains("cluster_state:ok"))
            });
            if ok {
                return Self { nodes };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the Redis cluster never reached cluster_state:ok");
    }

    /// `host:port` of every node, comma-separated (`REDIS_NODES`).
    pub fn nodes_setting(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A Sentinel watching `master` under the name `mymaster`.
pub fn start_sentinel(master: &RedisServer) -> RedisServer {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("wagate-sentinel-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("the temp dir is writable");
    let conf = dir.join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "sentinel monitor mymaster 127.0.0.1 {} 1\nsentinel down-after-milliseconds mymaster 1000\n",
            master.port()
        ),
    )
    .expect("the temp dir is writable");
    let mut s = RedisServer {
        port,
        dir,
        extra: vec![conf.display().to_string(), "--sentinel".into()],
        child: None,
    };
    s.start_sentinel_process();
    s
}

impl RedisServer {
    fn start_sentinel_process(&mut self) {
        // `redis-server <conf> --sentinel`: the config file must come first.
        let child = Command::new("redis-server")
            .args(&self.extra)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server can run as a sentinel");
        self.child = Some(child);
        let deadline = Instant::now() + READY_PATIENCE;
        while Instant::now() < deadline {
            let known = self
                .try_command(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"])
                .ok()
                .is_some_and(|r| r.as_strings().len() == 2);
            if known {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the sentinel on port {} did not come up", self.port);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
