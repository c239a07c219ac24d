//! Test and benchmark helpers for wagate. [`FakeLaravel`] plays the Laravel
//! backend: an HTTP server on a free loopback port, in its own thread and
//! actix System, that records every request (path, headers, raw body, arrival
//! time) and answers with a status and latency the test controls, over
//! HTTP or over HTTPS with a throw-away [`TestCa`]'s certificate. Waiters
//! wake on each arrival. [`RedisServer`] runs a real `redis-server` on a
//! free port that a test can stop and start again; [`GatewayProcess`] runs
//! the gateway binary so a test can SIGKILL it; [`GatewayClient`] talks to
//! a gateway over HTTP, in this process or in another, and [`eventually`]
//! waits on a condition with a deadline ([`PATIENCE`]). [`LaravelApp`] serves a real Laravel application built
//! from `docs/laravel.md`'s code. `FakeWhatsApp` (feature `fake-whatsapp`) is a WhatsApp
//! Web server for the real connector's tests. [`free_port`] finds a port
//! for other servers.

mod client;
mod fake_laravel;
#[cfg(feature = "fake-whatsapp")]
mod fake_whatsapp;
mod laravel_app;
mod multipart;
mod process;
mod redis_server;
#[cfg(test)]
mod tests;
mod tls;
mod wait;

pub use client::{GatewayClient, Reply};
pub use fake_laravel::{FakeLaravel, Received, API_PREFIX, GARBAGE, MAX_BODY};
#[cfg(feature = "fake-whatsapp")]
pub use fake_whatsapp::{
    Addressing, EncKind, FakeStats, FakeWhatsApp, MediaToSend, PeerMedia, PeerMessage, PeerReceipt,
    SenderAddress,
};
pub use laravel_app::{file_blocks, LaravelApp};
pub use multipart::Form;
pub use process::GatewayProcess;
pub use redis_server::{start_sentinel, RedisCluster, RedisServer, Resp};
pub use tls::{ServerCert, TestCa};
pub use wait::{eventually, eventually_every, PATIENCE};

/// A free TCP port on 127.0.0.1, for servers a test starts itself.
///
/// The port is free when this returns; another process may take it before the
/// caller binds it, which is rare enough for tests.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("binding 127.0.0.1:0 fails only when the machine has no free ports or no loopback")
}
