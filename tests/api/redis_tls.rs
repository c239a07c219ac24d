//! `rediss://`: the gateway talks to a `redis-server` that listens with TLS
//! only, its certificate signed by a throw-away CA (rcgen) that the gateway
//! trusts through `SSL_CERT_FILE`, and everything durable still works.

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use serde_json::json;
use wagate_testkit::RedisServer;

use crate::helpers::{spawn, test_config};

/// Writes `ca.pem`, `server.pem`, `server.key` into `dir`.
fn throwaway_ca(dir: &std::path::Path) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let server =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server_cert = server.signed_by(&server_key, &issuer).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), server_cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();
}

#[actix_rt::test]
async fn rediss_urls_speak_tls_to_a_server_signed_by_ssl_cert_file() {
    let certs = tempfile::tempdir().unwrap();
    throwaway_ca(certs.path());
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let path = |f: &str| certs.path().join(f).to_string_lossy().into_owned();
    let (cert, key, ca) = (path("server.pem"), path("server.key"), path("ca.pem"));
    let tls_port_arg = tls_port.to_string();
    let redis = RedisServer::start_with(&[
        "--tls-port",
        &tls_port_arg,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
        "--tls-auth-clients",
        "no",
    ]);
    // Only this test uses TLS in this process; the CA is ours alone.
    std::env::set_var("SSL_CERT_FILE", &ca);
    let mut config = test_config();
    config.store.kind = wagate::config::StoreKind::Redis;
    config.redis.url = format!("rediss://127.0.0.1:{tls_port}").into();
    config.store.node_id = "tls-node".into();
    let gw = spawn(config).await;
    gw.link("secure").await;
    let r = gw.send_text("secure", "5215512345678", "over TLS").await;
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let mid = r.json()["messageId"].as_str().unwrap().to_owned();
    gw.wait_message("secure", &mid, "sent").await;
    assert_eq!(
        gw.get("/health").await.json()["redis"]["connected"],
        json!(true)
    );
    // The record went through the TLS port into this very server.
    let stored = redis.command(&["SISMEMBER", "wagate:sessions", "secure"]);
    assert_eq!(stored.as_int(), Some(1), "{stored:?}");
    gw.shutdown().await;
}
