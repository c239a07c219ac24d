//! Unit tests of the helpers beside the fake Laravel: [`GatewayClient`]
//! (against the fake, which answers JSON on any route under its prefix),
//! [`free_port`], [`RedisServer`] and [`crate::GatewayProcess`].

use serde_json::{json, Value};

use super::servers_shared;
use crate::{free_port, FakeLaravel, GatewayClient, RedisServer, Resp};

#[test]
fn free_port_gives_a_bindable_port() {
    let _servers = servers_shared();
    let port = free_port();
    assert_ne!(port, 0);
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port is free");
}

#[test]
fn the_client_reports_status_json_and_headers() {
    let _servers = servers_shared();
    let fake = FakeLaravel::start();
    actix_rt::System::new().block_on(async {
        let client = GatewayClient::new(&format!("{}/", fake.base_url()));
        assert_eq!(client.base_url(), fake.base_url(), "no trailing slash");
        let ok = client.post("/qr/batch", json!({ "n": 1 })).await;
        assert_eq!(ok.status, 200);
        assert_eq!(ok.json(), json!({ "ok": true }));
        assert!(ok.headers.contains_key("content-type"));
        fake.set_status(422);
        let body = json!({ "n": 2 });
        let refused = client.post("/qr/batch", &body).await;
        assert_eq!(refused.status_and_json().0, 422);
        assert!(
            refused.text().contains("Unprocessable"),
            "{}",
            refused.text()
        );
        let bodies: Vec<Value> = fake.requests().into_iter().filter_map(|r| r.json).collect();
        assert_eq!(bodies, [json!({ "n": 1 }), body]);
    });
}

#[test]
fn a_request_nobody_answers_is_status_0_not_a_panic() {
    let port = free_port();
    actix_rt::System::new().block_on(async {
        let client = GatewayClient::new(&format!("http://127.0.0.1:{port}"));
        let r = client.request("DELETE", "/sessions/x", None).await;
        assert_eq!(r.status_and_json(), (0, Value::Null));
        assert_eq!(client.state_of("x").await, "");
        assert!(
            !client
                .reaches_state("x", "connected", std::time::Duration::from_millis(50))
                .await
        );
    });
}

#[test]
fn redis_server_stops_and_comes_back_with_its_data() {
    let mut redis = RedisServer::start();
    assert_eq!(redis.command(&["SET", "k", "v"]), Resp::Simple("OK".into()));
    assert_eq!(redis.command(&["GET", "k"]).as_text().as_deref(), Some("v"));
    assert_eq!(redis.command(&["RPUSH", "l", "a", "b"]).as_int(), Some(2));
    assert_eq!(
        redis.command(&["LRANGE", "l", "0", "-1"]).as_strings(),
        vec!["a", "b"]
    );
    redis.stop();
    assert!(
        redis.try_command(&["PING"]).is_err(),
        "refused while stopped"
    );
    redis.start_again();
    assert_eq!(redis.command(&["GET", "k"]).as_text().as_deref(), Some("v"));
}

#[test]
#[should_panic(expected = "exited before it was ready")]
fn a_gateway_process_that_dies_at_start_is_reported() {
    crate::GatewayProcess::start(std::path::Path::new("/bin/false"), &[]);
}
