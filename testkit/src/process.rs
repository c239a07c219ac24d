//! [`GatewayProcess`]: the gateway binary as a child process on a free
//! port, for tests about crashes: it can be killed with SIGKILL, stopped
//! with SIGTERM and started again with the same environment and port. Its
//! output goes to a log file the test can print when it fails.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// How long a start may take (a debug build on a loaded 2-core machine).
const READY_PATIENCE: Duration = Duration::from_secs(60);
/// How long a SIGTERM drain may take before SIGKILL.
const STOP_PATIENCE: Duration = Duration::from_secs(60);

pub struct GatewayProcess {
    binary: PathBuf,
    env: Vec<(String, String)>,
    port: u16,
    log: PathBuf,
    child: Option<Child>,
}

impl GatewayProcess {
    /// Starts `binary` with `PORT`, `HOST=127.0.0.1`, `LOG_LEVEL=warn` and
    /// then `env` (which may override them), and waits for `/health/live`.
    ///
    /// # Panics
    /// When the process exits or does not answer within a minute.
    pub fn start(binary: &Path, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let log = std::env::temp_dir().join(format!("wagate-{}-{port}.log", std::process::id()));
        let mut all = vec![
            ("PORT".to_owned(), port.to_string()),
            ("HOST".to_owned(), "127.0.0.1".to_owned()),
            ("LOG_LEVEL".to_owned(), "warn".to_owned()),
        ];
        all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut process = Self {
            binary: binary.to_owned(),
            env: all,
            port,
            log,
            child: None,
        };
        process.launch();
        process
    }

    fn launch(&mut self) {
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("the temp dir is writable");
        let _ = writeln!(out, "---- start ----");
        let child = Command::new(&self.binary)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log file handle"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        self.child = Some(child);
        let deadline = Instant::now() + READY_PATIENCE;
        while Instant::now() < deadline {
            if self.get_status("/health/live") == Some(200) {
                return;
            }
            if !self.is_running() {
                panic!(
                    "{} exited before it was ready:\n{}",
                    self.binary.display(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the gateway did not become ready:\n{}", self.log());
    }

    /// A bare HTTP/1.1 GET; the status code, if the server answered.
    fn get_status(&self, path: &str) -> Option<u16> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head).ok()?;
        std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Everything the process wrote so far, every run included.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no drain, no goodbye.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for the drain (SIGKILL after a minute).
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + STOP_PATIENCE;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().ok()
    }

    /// Starts again with the same environment and port.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// Starts again on the same port with `changes` applied to the
    /// environment (a setting changed or added), as an operator would
    /// restart a container with a new value.
    pub fn restart_with(&mut self, changes: &[(&str, &str)]) {
        for (key, value) in changes {
            match self.env.iter_mut().find(|(k, _)| k == key) {
                Some(kv) => kv.1 = value.to_string(),
                None => self.env.push((key.to_string(), value.to_string())),
            }
        }
        self.restart();
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.log);
    }
}
