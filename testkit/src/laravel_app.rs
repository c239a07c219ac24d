//! [`LaravelApp`]: a real Laravel application for the contract tests. It
//! copies the skeleton in `tests/laravel/` into a temporary directory, adds
//! every code block of `docs/laravel.md` marked `<!-- file: PATH -->` (so
//! the docs cannot drift from what runs), migrates a SQLite database and
//! serves the app with `php -S` on a free port. Needs Debian's `php-cli`,
//! `php-sqlite3` and `php-laravel-framework` (`.ci/run` installs them).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// How long `php -S` may take to accept connections.
const READY_PATIENCE: Duration = Duration::from_secs(30);

/// The route option that keeps Laravel's default rate limit off wagate's
/// routes; [`LaravelApp::enable_default_rate_limit`] takes it out again.
const THROTTLE_EXCLUSION: &str = "->withoutMiddleware('throttle:api')";

/// The repository root (this crate lives in `testkit/`).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit sits inside the repository")
        .to_owned()
}

/// The blocks of a Markdown page preceded by `<!-- file: PATH -->`, as
/// `(PATH, contents)`, in page order.
pub fn file_blocks(markdown: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut lines = markdown.lines();
    while let Some(line) = lines.next() {
        let Some(path) = line
            .trim()
            .strip_prefix("<!-- file:")
            .and_then(|rest| rest.strip_suffix("-->"))
            .map(str::trim)
        else {
            continue;
        };
        let fence = lines.next().unwrap_or_default();
        assert!(
            fence.starts_with("```"),
            "the line after `<!-- file: {path} -->` must open a code block, found {fence:?}"
        );
        let mut body = String::new();
        for line in lines.by_ref() {
            if line.starts_with("```") {
                break;
            }
            body.push_str(line);
            body.push('\n');
        }
        assert!(
            !path.is_empty() && !path.starts_with('/') && !path.contains(".."),
            "a block's path must be relative to the application: {path:?}"
        );
        blocks.push((path.to_owned(), body));
    }
    blocks
}

/// Copies `from` into `to`, recursively.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("the temp dir is writable");
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let entry = entry.expect("a readable directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("the temp dir is writable");
        }
    }
}

pub struct LaravelApp {
    dir: tempfile::TempDir,
    port: u16,
    env: Vec<(String, String)>,
    server: Child,
}

impl LaravelApp {
    /// Builds, migrates and serves the application. `env` is the
    /// application's environment (`WAGATE_TOKEN`, `WAGATE_SIGNING_SECRET`, …).
    ///
    /// # Panics
    /// When PHP or the framework is missing, the docs have no blocks, the
    /// migrations fail or the server does not come up.
    pub fn start(env: &[(&str, &str)]) -> Self {
        let php = Command::new("php").arg("--version").output();
        assert!(
            php.as_ref().is_ok_and(|o| o.status.success()),
            "`php` is needed to run the docs' Laravel code: apt-get install php-cli php-sqlite3 php-laravel-framework (.ci/run does)"
        );
        assert!(
            Path::new("/usr/share/php/Illuminate/autoload.php").exists(),
            "Laravel is needed: apt-get install php-laravel-framework (.ci/run does)"
        );
        let root = repo_root();
        let dir = tempfile::Builder::new()
            .prefix("wagate-laravel-")
            .tempdir()
            .expect("the temp dir is writable");
        copy_tree(&root.join("tests/laravel"), dir.path());
        let docs = std::fs::read_to_string(root.join("docs/laravel.md")).expect("docs/laravel.md");
        let blocks = file_blocks(&docs);
        assert!(
            blocks.len() >= 5,
            "docs/laravel.md has too few `<!-- file: -->` blocks: {blocks:?}"
        );
        for (path, body) in &blocks {
            let target = dir.path().join(path);
            std::fs::create_dir_all(target.parent().expect("a file path has a parent"))
                .expect("the temp dir is writable");
            std::fs::write(&target, body).expect("the temp dir is writable");
        }
        for sub in ["storage/framework/views", "storage/logs", "bootstrap/cache"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("the temp dir is writable");
        }
        let database = dir.path().join("database/database.sqlite");
        std::fs::write(&database, b"").expect("the temp dir is writable");

        let mut all = vec![(
            "DB_DATABASE".to_owned(),
            database.to_string_lossy().into_owned(),
        )];
        all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));

        let migrate = Command::new("php")
            .args(["artisan", "migrate", "--force", "--no-interaction"])
            .current_dir(dir.path())
            .envs(all.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("php runs");
        assert!(
            migrate.status.success(),
            "php artisan migrate failed:\n{}\n{}",
            String::from_utf8_lossy(&migrate.stdout),
            String::from_utf8_lossy(&migrate.stderr)
        );

        let port = free_port();
        let log = std::fs::File::create(dir.path().join("server.log")).expect("a log file");
        let server = Command::new("php")
            // OPcache is on in `php -S` (unlike plain CLI) and re-reads a
            // changed file only every 2 s: off, so a rewritten routes file
            // applies from the next request.
            .args([
                "-d",
                "opcache.enable=0",
                "-S",
                &format!("127.0.0.1:{port}"),
                "-t",
                "public",
                "public/index.php",
            ])
            .current_dir(dir.path())
            .envs(all.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file handle"))
            .stderr(log)
            .spawn()
            .expect("php -S starts");
        let mut app = Self {
            dir,
            port,
            env: all,
            server,
        };
        app.wait_ready();
        app
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_PATIENCE;
        while Instant::now() < deadline {
            if self.get_status("/api/qr/batch").is_some() {
                return;
            }
            if let Ok(Some(status)) = self.server.try_wait() {
                panic!("php -S exited ({status}):\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("php -S did not come up:\n{}", self.log());
    }

    /// A bare HTTP/1.1 GET; the status code, if the server answered.
    fn get_status(&self, path: &str) -> Option<u16> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head).ok()?;
        std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
    }

    /// `LARAVEL_API` for the gateway: the app's `/api`.
    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}/api", self.port)
    }

    /// The server's output so far (PHP's access log and Laravel's log).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Rows of `sql` against the app's database, as JSON objects, read
    /// with PHP's own PDO (no sqlite3 CLI needed).
    pub fn query(&self, sql: &str) -> Vec<serde_json::Value> {
        const READ: &str = r#"$db = new PDO('sqlite:'.getenv('DB_DATABASE'));
$db->setAttribute(PDO::ATTR_ERRMODE, PDO::ERRMODE_EXCEPTION);
$db->setAttribute(PDO::ATTR_TIMEOUT, 30);
echo json_encode($db->query($argv[1])->fetchAll(PDO::FETCH_ASSOC));"#;
        let out = Command::new("php")
            .args(["-r", READ, sql])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("php runs");
        assert!(
            out.status.success(),
            "query {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "query {sql:?} gave no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Runs `code` (PHP statements ending in `return …;`) inside the booted
    /// application, through the skeleton's `eval.php`; what it returns, as
    /// JSON. For the docs' helpers that the application itself calls.
    pub fn eval(&self, code: &str) -> serde_json::Value {
        let out = Command::new("php")
            .args(["eval.php", code])
            .current_dir(self.dir.path())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("php runs");
        assert!(
            out.status.success(),
            "{code} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{code} returned no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Puts Laravel's default `throttle:api` (60 requests a minute) back on
    /// the wagate routes, as an application that forgot the docs' exclusion
    /// has it. `php -S` (OPcache off) reads the routes on every request.
    ///
    /// # Panics
    /// When the docs' routes no longer carry the exclusion.
    pub fn enable_default_rate_limit(&self) {
        let routes = self.dir.path().join("routes/api.php");
        let text = std::fs::read_to_string(&routes).expect("routes/api.php from the docs");
        assert!(
            text.contains(THROTTLE_EXCLUSION),
            "the docs' routes no longer exclude throttle:api: {text}"
        );
        std::fs::write(&routes, text.replace(THROTTLE_EXCLUSION, ""))
            .expect("the temp dir is writable");
    }

    /// How many POSTs Laravel answered with `status`, from the line the
    /// skeleton's `public/index.php` logs for each (`answered 200 POST /api/...`).
    pub fn answered(&self, status: u16) -> usize {
        let needle = format!("answered {status} POST ");
        self.log().matches(&needle).count()
    }
}

impl Drop for LaravelApp {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::file_blocks;

    #[test]
    fn file_blocks_are_found_with_their_paths() {
        let md = "text\n<!-- file: app/A.php -->\n```php\n<?php\necho 1;\n```\nmore\n```php\nnot marked\n```\n<!-- file: routes/api.php -->\n```php\n<?php\n```\n";
        assert_eq!(
            file_blocks(md),
            vec![
                ("app/A.php".to_owned(), "<?php\necho 1;\n".to_owned()),
                ("routes/api.php".to_owned(), "<?php\n".to_owned()),
            ]
        );
    }

    #[test]
    fn the_docs_give_every_file_the_app_needs() {
        let docs = std::fs::read_to_string(super::repo_root().join("docs/laravel.md")).unwrap();
        let paths: Vec<String> = file_blocks(&docs).into_iter().map(|(p, _)| p).collect();
        for needed in [
            "routes/api.php",
            "app/Http/Middleware/VerifyWagateSignature.php",
            "app/Http/Controllers/WagateController.php",
            "app/Models/WhatsappSession.php",
            "app/Models/WhatsappMessage.php",
            "app/Providers/WagateServiceProvider.php",
            "config/wagate.php",
            "app/Support/WagateRecords.php",
        ] {
            assert!(
                paths.iter().any(|p| p == needed),
                "{needed} missing: {paths:?}"
            );
        }
        assert!(
            paths
                .iter()
                .filter(|p| p.starts_with("database/migrations/"))
                .count()
                >= 3
        );
    }
}
