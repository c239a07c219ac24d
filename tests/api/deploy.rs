//! The deployment files, checked offline (no Docker engine runs here):
//! `deploy/docker-compose.yml` and the `Dockerfile` agree with each other
//! and with the binary — every variable is one the binary reads, ports,
//! volume and healthcheck match, the stop grace covers the drain — and the
//! binary starts with exactly the compose file's environment, and its
//! `wagate healthcheck` (the image's HEALTHCHECK) passes against it.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use wagate::config::{Config, ENV_NAMES};
use wagate_testkit::{GatewayProcess, RedisServer};

const BINARY: &str = env!("CARGO_BIN_EXE_wagate");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The values of a compose `environment` mapping, `${NAME:?…}` and
/// `${NAME:-default}` resolved from `given` (what an operator would set).
fn environment(service: &serde_norway::Value, given: &[(&str, &str)]) -> BTreeMap<String, String> {
    let map = service["environment"]
        .as_mapping()
        .expect("environment is a mapping");
    map.iter()
        .map(|(k, v)| {
            let key = k.as_str().expect("string keys").to_owned();
            let raw = v.as_str().map(str::to_owned).unwrap_or_else(|| {
                serde_norway::to_string(v)
                    .expect("scalar")
                    .trim()
                    .to_owned()
            });
            let value = match raw.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
                Some(expr) => {
                    let name = expr.split([':', '-', '?']).next().unwrap_or_default();
                    match given.iter().find(|(k, _)| *k == name) {
                        Some((_, v)) => (*v).to_owned(),
                        None => {
                            assert!(
                                expr.contains(":-"),
                                "{key}: ${{{expr}}} needs a value and the test gave none"
                            );
                            expr.split_once(":-")
                                .map(|(_, d)| d)
                                .unwrap_or_default()
                                .to_owned()
                        }
                    }
                }
                None => raw,
            };
            (key, value)
        })
        .collect()
}

#[actix_rt::test]
async fn compose_file_and_dockerfile_match_the_binary() {
    let compose: serde_norway::Value =
        serde_norway::from_str(&read("deploy/docker-compose.yml")).expect("valid YAML");
    let dockerfile = read("Dockerfile");
    let wagate = &compose["services"]["wagate"];
    let key = "k".repeat(40);
    let env = environment(
        wagate,
        &[
            ("LARAVEL_API", "https://app.example.com/api"),
            ("LARAVEL_TOKEN", "laravel-token"),
            ("API_KEYS", &key),
        ],
    );

    // Every variable is one the binary reads (a typo would be ignored silently).
    for name in env.keys() {
        assert!(
            ENV_NAMES.iter().any(|(n, _)| n == name),
            "{name} in the compose file is not a wagate setting"
        );
    }
    // Port, data volume and healthcheck agree everywhere.
    let port = &env["PORT"];
    assert_eq!(
        wagate["ports"][0].as_str(),
        Some(format!("{port}:{port}").as_str())
    );
    assert!(
        dockerfile.contains(&format!("EXPOSE {port}")),
        "EXPOSE {port}"
    );
    assert!(
        dockerfile.contains(&format!("PORT={port}")),
        "ENV PORT={port}"
    );
    let data_dir = &env["DATA_DIR"];
    let volumes: Vec<&str> = wagate["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        volumes.iter().any(|v| v.ends_with(&format!(":{data_dir}"))),
        "DATA_DIR {data_dir} is on a volume: {volumes:?}"
    );
    assert!(dockerfile.contains(&format!("VOLUME {data_dir}")));
    let probe: Vec<&str> = wagate["healthcheck"]["test"]
        .as_sequence()
        .expect("healthcheck.test")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(probe, ["CMD", "wagate", "healthcheck"]);
    assert!(dockerfile.contains(r#"CMD ["wagate", "healthcheck"]"#));
    assert!(dockerfile.contains(r#"ENTRYPOINT ["wagate"]"#));
    // The stop grace covers the whole drain: HTTP in flight, then sends,
    // sessions and batchers.
    let grace = humantime::parse_duration(wagate["stop_grace_period"].as_str().expect("grace"))
        .expect("a duration");
    let drain =
        Duration::from_secs(Config::defaults().server.shutdown_timeout_secs) + wagate::DRAIN_LIMIT;
    assert!(
        grace >= drain,
        "stop_grace_period {grace:?} < drain {drain:?}"
    );
    assert_eq!(wagate["stop_signal"].as_str(), Some("SIGTERM"));
    // Redis keeps what it accepted (AOF) and is the one the gateway uses.
    let redis = &compose["services"]["redis"];
    let command: Vec<&str> = redis["command"]
        .as_sequence()
        .expect("redis command")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        command.windows(2).any(|w| w == ["--appendonly", "yes"]),
        "{command:?}"
    );
    assert_eq!(env["REDIS_URL"], "redis://redis:6379");

    // The binary starts with exactly this environment (Redis and the data
    // directory swapped for local ones) and the image's probe passes.
    let redis = RedisServer::start();
    let data = tempfile::tempdir().expect("tempdir");
    let mut run: Vec<(&str, String)> = env
        .iter()
        .filter(|(k, _)| k.as_str() != "PORT")
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    for (k, v) in &mut run {
        match *k {
            "REDIS_URL" => *v = redis.url(),
            "DATA_DIR" => *v = data.path().display().to_string(),
            _ => {}
        }
    }
    let pairs: Vec<(&str, &str)> = run.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut gateway = GatewayProcess::start(Path::new(BINARY), &pairs);
    let healthy = Command::new(BINARY)
        .arg("healthcheck")
        .env("PORT", gateway.port().to_string())
        .status()
        .expect("the binary runs");
    assert!(
        healthy.success(),
        "`wagate healthcheck` passes:\n{}",
        gateway.log()
    );
    let exit = gateway.terminate().expect("it ran");
    assert!(exit.success(), "{exit:?}\n{}", gateway.log());
    let down = Command::new(BINARY)
        .arg("healthcheck")
        .env("PORT", gateway.port().to_string())
        .status()
        .expect("the binary runs");
    assert!(!down.success(), "the probe fails once the gateway is gone");
}
