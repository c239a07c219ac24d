//! `deploy/k8s/wagate.yaml`, `deploy/grafana/wagate.json` and
//! `deploy/prometheus/alerts.yml`, checked offline against the binary: the
//! manifest sets only settings wagate reads, its probes are routes the
//! gateway serves, its port, user, data volume and grace period agree with
//! the Dockerfile and the drain; every metric the dashboard and the alert
//! rules query is one a working gateway exports.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::json;
use serde_norway::Value;
use wagate::config::{Config, ENV_NAMES};
use wagate_testkit::{FakeLaravel, RedisServer};

use crate::helpers::{message_items, redis_config, spawn, PATIENCE};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn manifests() -> Vec<Value> {
    use serde::Deserialize as _;
    serde_norway::Deserializer::from_str(&read("deploy/k8s/wagate.yaml"))
        .map(|doc| Value::deserialize(doc).expect("valid YAML"))
        .collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter()
        .filter(|d| d["kind"].as_str() == Some(kind))
        .collect()
}

#[test]
fn the_kubernetes_manifest_matches_the_binary_and_the_image() {
    let docs = manifests();
    let sets = of_kind(&docs, "StatefulSet");
    assert_eq!(sets.len(), 1);
    let set = sets[0];
    let pod = &set["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let env: Vec<(&str, &Value)> = c["env"]
        .as_sequence()
        .expect("env")
        .iter()
        .map(|e| (e["name"].as_str().expect("name"), e))
        .collect();
    for (name, _) in &env {
        assert!(
            ENV_NAMES.iter().any(|(n, _)| n == name),
            "{name} in the manifest is not a wagate setting"
        );
    }
    let value = |name: &str| {
        env.iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, e)| e["value"].as_str())
            .unwrap_or_else(|| panic!("{name} has a literal value"))
    };
    // NODE_ID is the pod's stable name.
    let node = env
        .iter()
        .find(|(n, _)| *n == "NODE_ID")
        .expect("NODE_ID")
        .1;
    assert_eq!(
        node["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        Some("metadata.name")
    );
    // Secrets come from a Secret, never as literals.
    for secret in ["API_KEYS", "LARAVEL_TOKEN", "REDIS_URL"] {
        let e = env.iter().find(|(n, _)| *n == secret).expect(secret).1;
        assert!(
            e["valueFrom"]["secretKeyRef"].is_mapping(),
            "{secret} from a Secret"
        );
    }
    // The port everywhere.
    let port: u16 = value("PORT").parse().unwrap();
    assert_eq!(
        c["ports"][0]["containerPort"].as_u64(),
        Some(u64::from(port))
    );
    let dockerfile = read("Dockerfile");
    assert!(dockerfile.contains(&format!("EXPOSE {port}")));
    // Probes hit routes the gateway serves, without a key.
    let served: BTreeSet<String> = wagate::http::route_table()
        .into_iter()
        .filter(|(m, _)| m == actix_web::http::Method::GET)
        .map(|(_, p)| p)
        .collect();
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let path = c[probe]["httpGet"]["path"].as_str().expect(probe);
        assert!(served.contains(path), "{probe} {path} is not a route");
        assert!(path.starts_with("/health"), "{probe} needs no key: {path}");
    }
    assert_eq!(
        c["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/health/ready")
    );
    // The image's user, a read-only root, DATA_DIR on the claimed volume.
    let uid = pod["securityContext"]["runAsUser"]
        .as_u64()
        .expect("runAsUser");
    assert!(
        dockerfile.contains(&format!("--uid {uid}")),
        "the image's user is {uid}"
    );
    assert_eq!(
        c["securityContext"]["readOnlyRootFilesystem"].as_bool(),
        Some(true)
    );
    let data_dir = value("DATA_DIR");
    let mount = c["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"].as_str() == Some(data_dir))
        .unwrap_or_else(|| panic!("DATA_DIR {data_dir} is mounted"));
    let claims = set["spec"]["volumeClaimTemplates"].as_sequence().unwrap();
    assert!(claims
        .iter()
        .any(|t| t["metadata"]["name"] == mount["name"]));
    // The grace period covers the whole drain.
    let grace = Duration::from_secs(pod["terminationGracePeriodSeconds"].as_u64().unwrap());
    let drain =
        Duration::from_secs(Config::defaults().server.shutdown_timeout_secs) + wagate::DRAIN_LIMIT;
    assert!(grace >= drain, "grace {grace:?} < drain {drain:?}");
    // Services select the pods and reach the named port; a budget exists.
    let labels = &set["spec"]["template"]["metadata"]["labels"];
    for svc in of_kind(&docs, "Service") {
        for (k, v) in svc["spec"]["selector"].as_mapping().unwrap() {
            assert_eq!(
                &labels[k.as_str().unwrap()],
                v,
                "a Service selects the pods"
            );
        }
        assert_eq!(svc["spec"]["ports"][0]["targetPort"].as_str(), Some("http"));
    }
    assert_eq!(
        set["spec"]["serviceName"].as_str(),
        of_kind(&docs, "Service")
            .iter()
            .find(|s| s["spec"]["clusterIP"].as_str() == Some("None"))
            .and_then(|s| s["metadata"]["name"].as_str())
    );
    assert_eq!(of_kind(&docs, "PodDisruptionBudget").len(), 1);
}

/// `wagate_*` metric names in `text`, without histogram suffixes.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("wagate_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        names.insert(base.to_owned());
        rest = &tail[end..];
    }
    names
}

#[actix_rt::test]
async fn every_metric_the_dashboard_and_alerts_query_is_exported() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/wagate.json")).expect("valid JSON");
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .collect();
    assert!(
        exprs.len() >= 10,
        "a dashboard with {} queries",
        exprs.len()
    );
    let alerts: Value = serde_norway::from_str(&read("deploy/prometheus/alerts.yml")).unwrap();
    let rules: Vec<String> = alerts["groups"][0]["rules"]
        .as_sequence()
        .expect("rules")
        .iter()
        .map(|r| {
            assert!(
                r["alert"].is_string() && r["labels"]["severity"].is_string(),
                "{r:?}"
            );
            r["expr"].as_str().expect("expr").to_owned()
        })
        .collect();
    let wanted = metric_names(&format!("{} {}", exprs.join(" "), rules.join(" ")));
    assert!(wanted.len() >= 15, "{wanted:?}");
    assert!(
        wanted.contains("wagate_actor_mailbox_wait_seconds"),
        "suffixes stripped"
    );

    // A gateway doing real work: sessions, Laravel, Redis, messages, HTTP.
    let redis = RedisServer::start();
    let laravel = FakeLaravel::start();
    let mut config = redis_config(&redis);
    config.laravel.api = laravel.base_url();
    config.batch.messages_interval_ms = 20;
    let gw = spawn(config).await;
    gw.link("dash").await;
    let sent = gw.send_text("dash", "5215512345678", "hola").await.json();
    gw.wait_message("dash", sent["messageId"].as_str().unwrap(), "sent")
        .await;
    let r = gw
        .post(
            "/sessions/dash/simulate/incoming",
            json!({ "from": "5215512345678", "text": "hi" }),
        )
        .await;
    assert_eq!(r.status, 200);
    let delivered = laravel
        .wait_for(PATIENCE, |_| {
            !message_items(&laravel, "message").is_empty()
                && !message_items(&laravel, "send_result").is_empty()
        })
        .await;
    assert!(
        delivered,
        "Laravel got the incoming message and the send result"
    );
    let exported = gw.get_text("/metrics").await;
    let missing: Vec<&String> = wanted
        .iter()
        .filter(|name| !exported.contains(&format!("# TYPE {name} ")))
        .collect();
    assert!(missing.is_empty(), "queried but not exported: {missing:?}");
    gw.shutdown().await;
}
