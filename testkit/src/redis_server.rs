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

/// How long a start may take before the test fails.
const READY_PATIENCE: Duration = Duration::from_secs(15);

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
    child: Option<Child>,
}

impl RedisServer {
    /// Starts `redis-server` on a free port and waits until it answers PING.
    ///
    /// # Panics
    /// When `redis-server` is not installed or does not come up.
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "wagate-redis-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("the temp dir is writable");
        let mut server = Self {
            port: free_port(),
            dir,
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

    /// Stops the server the way an outage looks to clients (connections
    /// refused) and waits for the process to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = self.try_command(&["SHUTDOWN", "NOSAVE"]);
            let deadline = Instant::now() + READY_PATIENCE;
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

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
