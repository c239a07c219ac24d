//! [`FakeLaravel::set_garbage`] and [`Received::delay`]: what the chaos test
//! relies on to break Laravel's answers and to tell which answers the
//! gateway saw.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::servers_shared;
use crate::{FakeLaravel, GARBAGE};

/// One raw POST; the whole answer as bytes (garbage is not UTF-8).
fn raw_post(port: u16) -> Vec<u8> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("the fake listens");
    write!(
        stream,
        "POST /api/qr/batch HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    )
    .expect("the request is written");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("an answer comes");
    answer
}

#[test]
fn garbage_mode_answers_non_json_with_the_set_status_and_records_the_delay() {
    let _shared = servers_shared();
    let laravel = FakeLaravel::start();
    laravel.set_status(502);
    laravel.set_garbage(true);
    laravel.set_delay(Duration::from_millis(30));
    let answer = raw_post(laravel.port());
    assert!(answer.starts_with(b"HTTP/1.1 502"), "{answer:?}");
    assert!(answer.ends_with(GARBAGE), "{answer:?}");
    let body_start = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(serde_json::from_slice::<serde_json::Value>(&answer[body_start..]).is_err());

    laravel.set_garbage(false);
    laravel.set_delay(Duration::ZERO);
    let answer = raw_post(laravel.port());
    assert!(!answer.ends_with(GARBAGE), "garbage mode ends");
    let delays: Vec<Duration> = laravel.requests().iter().map(|r| r.delay).collect();
    assert_eq!(delays, [Duration::from_millis(30), Duration::ZERO]);
}
