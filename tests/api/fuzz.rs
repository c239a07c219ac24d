//! API-level fuzzing (issue 16): every JSON body the API takes, and the
//! path and query pieces next to it, filled with any bytes — random bytes,
//! truncated or wrongly typed JSON, any content type — sent to a running
//! gateway (the real binary, simulator connector). Each answer must be a
//! 2xx or a 4xx with the JSON error shape; never a 5xx, a bare body, a
//! dropped connection or a stuck request, and the gateway serves on.
//! proptest shrinks a failure to its smallest request and keeps its seed
//! in `proptest-regressions/` (its default place, committed);
//! `PROPTEST_CASES` bounds the run.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};
use wagate_testkit::GatewayProcess;

const BINARY: &str = env!("CARGO_BIN_EXE_wagate");
const KEY: &str = "fuzz-api-key-0123456789";

/// One raw HTTP/1.1 exchange (`Connection: close`): status and body.
pub fn exchange(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Result<(u16, Vec<u8>), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .map_err(|e| e.to_string())?;
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nX-Api-Key: {KEY}\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    // The server may answer (and close) before reading the whole body.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("read: {e} after {} bytes", raw.len()))?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no head in {:?}", String::from_utf8_lossy(&raw)))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Ok((status, body))
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&raw[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 || raw.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
        raw = &raw[(eol + 4 + size).min(raw.len())..];
    }
    out
}

/// A JSON value of any shape, keys drawn from the fields the API reads.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        any::<String>().prop_map(Value::from),
        "[0-9+]{0,25}".prop_map(Value::from),
        "[A-Za-z0-9_-]{0,70}".prop_map(Value::from),
    ];
    let field = prop::sample::select(vec![
        "id",
        "phone",
        "to",
        "text",
        "idempotencyKey",
        "idempotency_key",
        "from",
        "reason",
        "x",
    ]);
    leaf.prop_recursive(3, 24, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(field.clone(), inner, 0..5).prop_map(|m| Value::Object(
                m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
            )),
        ]
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => json_value().prop_map(|v| serde_json::to_vec(&v).expect("JSON")),
        // Valid JSON cut anywhere.
        2 => (json_value(), any::<prop::sample::Index>()).prop_map(|(v, i)| {
            let raw = serde_json::to_vec(&v).expect("JSON");
            let cut = i.index(raw.len() + 1);
            raw[..cut].to_vec()
        }),
        2 => prop::collection::vec(any::<u8>(), 0..300),
        1 => Just(Vec::new()),
        1 => Just(b"{\"id\":\"\\ud800\"}".to_vec()),
        1 => Just(b"{\"to\":\"5215512345678\",\"text\":\"hi\",\"to\":\"1\"}".to_vec()),
    ]
}

/// A path segment: a good session id, a bad one, or percent-escaped bytes.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just("fz".to_owned()),
        2 => "[A-Za-z0-9_-]{1,70}",
        1 => prop::collection::vec(any::<u8>(), 0..20).prop_map(|b| b.iter().map(|c| format!("%{c:02X}")).collect()),
    ]
}

#[derive(Debug, Clone)]
struct Request {
    method: &'static str,
    target: String,
    content_type: Option<String>,
    body: Vec<u8>,
}

fn request() -> impl Strategy<Value = Request> {
    let content_type = prop_oneof![
        4 => Just(Some("application/json".to_owned())),
        1 => Just(None),
        1 => Just(Some("text/plain".to_owned())),
        1 => Just(Some("application/json; charset=latin1".to_owned())),
        1 => "[ -~]{0,30}".prop_map(Some),
    ];
    let route = (
        segment(),
        prop::sample::select(vec!["scan", "disconnect", "logout", "incoming", "nope"]),
        prop_oneof![
            "[A-Za-z0-9=&_.~+-]{0,40}",
            prop::collection::vec(any::<u8>(), 0..12).prop_map(|b| b
                .iter()
                .map(|c| format!("format=%{c:02X}"))
                .collect::<String>())
        ],
    )
        .prop_map(|(id, action, query)| {
            prop::sample::select(vec![
                ("POST", "/sessions".to_owned()),
                ("POST", format!("/sessions/{id}/pairing-code")),
                ("POST", format!("/sessions/{id}/messages")),
                ("POST", format!("/sessions/{id}/simulate/{action}")),
                ("GET", format!("/sessions?{query}")),
                ("GET", format!("/sessions/{id}/qr?{query}")),
                ("GET", format!("/sessions/{id}/messages/{id}")),
                ("POST", format!("/sessions/{id}/restart")),
                ("DELETE", format!("/sessions/{id}x")),
            ])
        });
    (route.prop_flat_map(|s| s), content_type, body()).prop_map(
        |((method, target), content_type, body)| Request {
            method,
            target,
            content_type,
            body,
        },
    )
}

fn config() -> Config {
    Config {
        // `PROPTEST_CASES` (CI sets it) decides how many; 256 by default.
        // The source file tells proptest where to keep failing seeds.
        source_file: Some(file!()),
        ..Config::default()
    }
}

#[test]
fn any_body_gets_a_json_answer_and_never_a_5xx() {
    let mut gateway = GatewayProcess::start(
        Path::new(BINARY),
        &[
            ("API_KEYS", KEY),
            ("CONNECTOR", "simulator"),
            ("MESSAGE_QUEUE_LIMIT", "100000"),
        ],
    );
    let port = gateway.port();
    let ct = [("Content-Type", "application/json".to_owned())];
    let (status, _) = exchange(
        port,
        "POST",
        "/sessions",
        &ct,
        &serde_json::to_vec(&json!({ "id": "fz" })).unwrap(),
    )
    .expect("create");
    assert_eq!(status, 201);
    let mut runner = TestRunner::new(config());
    let result = runner.run(&request(), |r| {
        let headers: Vec<(&str, String)> = r
            .content_type
            .iter()
            .map(|c| ("Content-Type", c.clone()))
            .collect();
        let (status, body) =
            exchange(port, r.method, &r.target, &headers, &r.body).map_err(TestCaseError::fail)?;
        prop_assert!(
            (200..500).contains(&status),
            "{} {} answered {}: {}",
            r.method,
            r.target,
            status,
            String::from_utf8_lossy(&body)
        );
        if status >= 400 {
            let v: Value = serde_json::from_slice(&body).map_err(|e| {
                TestCaseError::fail(format!(
                    "{status} not JSON ({e}): {}",
                    String::from_utf8_lossy(&body)
                ))
            })?;
            prop_assert!(
                v["error"]["code"].as_str().is_some_and(|c| !c.is_empty()),
                "no error code: {}",
                v
            );
            prop_assert!(v["error"]["message"].is_string(), "no message: {}", v);
        }
        Ok(())
    });
    assert!(gateway.is_running(), "the gateway died:\n{}", gateway.log());
    if let Err(e) = result {
        panic!("{e}\n{}", gateway.log());
    }
    let (status, _) = exchange(port, "GET", "/health", &[], b"").expect("health");
    assert_eq!(status, 200, "still serving");
    let exit = gateway.terminate().expect("it ran");
    assert!(exit.success(), "{exit:?}\n{}", gateway.log());
}

/// One record of the kinds the gateway reads back from Redis, holding any
/// bytes.
#[derive(Debug, Clone)]
enum Stored {
    /// `session:{id}:info` of a listed session.
    SessionInfo(String, Vec<u8>),
    /// A member of the session set that may not even be an id.
    SessionListed(Vec<u8>),
    /// `wagate:message:{id}`, read by the message status route.
    MessageRecord(Vec<u8>),
    /// An entry of the outbound message stream.
    StreamEntry(Vec<u8>),
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..120),
        json_value().prop_map(|v| serde_json::to_vec(&v).expect("JSON")),
        Just(br#"{"id":"ok","desired":"running","created_ms":1,"node":"fuzz"}"#.to_vec()),
        Just(b"{\"message_id\":\"3EB0AAAAAAAAAAAAAAAA\",\"status\":\"sent\"}\xff".to_vec()),
    ]
}

fn stored() -> impl Strategy<Value = Stored> {
    prop_oneof![
        ("[a-z0-9]{1,10}", bytes()).prop_map(|(id, b)| Stored::SessionInfo(id, b)),
        bytes().prop_map(Stored::SessionListed),
        bytes().prop_map(Stored::MessageRecord),
        bytes().prop_map(Stored::StreamEntry),
    ]
}

/// One Redis command whose arguments are any bytes.
fn redis_bytes(port: u16, args: &[&[u8]]) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("redis is up");
    let mut request = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        request.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        request.extend_from_slice(a);
        request.extend_from_slice(b"\r\n");
    }
    s.write_all(&request).expect("written");
    let mut reply = [0u8; 256];
    let n = s.read(&mut reply).expect("a reply");
    assert!(
        n > 0 && reply[0] != b'-',
        "{}",
        String::from_utf8_lossy(&reply[..n])
    );
}

const MESSAGE_ID: &str = "3EB0AAAAAAAAAAAAAAAA";

#[test]
fn redis_records_of_any_bytes_never_stop_or_break_the_gateway() {
    let redis = wagate_testkit::RedisServer::start();
    let port = redis.port();
    let url = redis.url();
    let config = Config {
        // Each case starts a gateway: a sixteenth of the cases of a pure property.
        cases: (Config::default().cases / 16).max(4),
        ..config()
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&prop::collection::vec(stored(), 1..6), |records| {
        redis.command(&["FLUSHALL"]);
        for r in &records {
            match r {
                Stored::SessionInfo(id, body) => {
                    redis_bytes(port, &[b"SADD", b"wagate:sessions", id.as_bytes()]);
                    redis_bytes(
                        port,
                        &[b"SET", format!("session:{{{id}}}:info").as_bytes(), body],
                    );
                }
                Stored::SessionListed(raw) => {
                    redis_bytes(port, &[b"SADD", b"wagate:sessions", raw])
                }
                Stored::MessageRecord(body) => redis_bytes(
                    port,
                    &[
                        b"SET",
                        format!("wagate:message:{MESSAGE_ID}").as_bytes(),
                        body,
                    ],
                ),
                Stored::StreamEntry(body) => {
                    redis_bytes(port, &[b"XADD", b"wagate:messages", b"*", b"m", body])
                }
            }
        }
        let gateway = GatewayProcess::start(
            Path::new(BINARY),
            &[
                ("API_KEYS", KEY),
                ("REDIS_URL", &url),
                ("NODE_ID", "fuzz"),
                ("CONNECTOR", "simulator"),
            ],
        );
        let p = gateway.port();
        let get = |path: &str| exchange(p, "GET", path, &[], b"").map_err(TestCaseError::fail);
        let (status, body) = get("/sessions")?;
        prop_assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let ct = [("Content-Type", "application/json".to_owned())];
        let (status, body) = exchange(p, "POST", "/sessions", &ct, br#"{"id":"ok"}"#)
            .map_err(TestCaseError::fail)?;
        prop_assert!(
            status == 201 || status == 409,
            "create answered {}: {}",
            status,
            String::from_utf8_lossy(&body)
        );
        let (status, body) = get(&format!("/sessions/ok/messages/{MESSAGE_ID}"))?;
        prop_assert!(
            status < 500,
            "a stored record answered {}: {}",
            status,
            String::from_utf8_lossy(&body)
        );
        // Ready again within PATIENCE: one Redis command timing out on a
        // starved CPU marks Redis down until the next ping (a second), which
        // is the honest answer then; a record that broke the gateway would
        // keep it unready.
        let deadline = std::time::Instant::now() + crate::helpers::PATIENCE;
        loop {
            let (status, body) = get("/health/ready")?;
            if status == 200 {
                break;
            }
            prop_assert!(
                std::time::Instant::now() < deadline,
                "not ready: {} {}",
                status,
                String::from_utf8_lossy(&body)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
