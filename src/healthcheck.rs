//! `wagate healthcheck`: a tiny HTTP probe of `/health/live` for the Docker
//! HEALTHCHECK, so the runtime image needs no curl. Exit code 0 = healthy.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

pub fn probe(port: u16) -> anyhow::Result<()> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    anyhow::ensure!(
        &head[9..12] == b"200",
        "health/live answered {:?}",
        String::from_utf8_lossy(&head)
    );
    Ok(())
}
