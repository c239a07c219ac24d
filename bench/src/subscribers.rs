//! Live-event subscribers for the scenarios: a reading one that counts the
//! events it gets, and a stuck one that asks for the stream and never
//! reads a byte (the gateway must drop it without slowing anything). Raw
//! HTTP/1.1 over TCP: the SSE body is only counted, never parsed. Also a
//! webhook receiver that hangs: it takes connections and request bytes and
//! never answers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Opens `GET /events` on the gateway at `base` (`http://host:port`),
/// with a receive buffer of `recv_buffer` bytes when given.
async fn open(base: &str, recv_buffer: Option<u32>) -> anyhow::Result<TcpStream> {
    let addr = base.trim_start_matches("http://");
    let socket = tokio::net::TcpSocket::new_v4()?;
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    let mut s = socket.connect(addr.parse()?).await?;
    let request =
        format!("GET /events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
    s.write_all(request.as_bytes()).await?;
    Ok(s)
}

/// A subscriber that never reads; dropping it closes the connection. Its
/// receive buffer is small, as a phone's or a stalled proxy's would fill:
/// what it holds back then waits in the gateway, which must drop it.
pub async fn stuck(base: &str) -> anyhow::Result<TcpStream> {
    open(base, Some(4096)).await
}

/// A subscriber that reads everything; the count of events it got so far.
pub async fn reading(base: &str) -> anyhow::Result<Arc<AtomicU64>> {
    let mut s = open(base, None).await?;
    let count = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&count);
    actix_rt::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        // The tail of the previous read, so a marker split across reads counts once.
        let mut carry: Vec<u8> = Vec::new();
        const MARK: &[u8] = b"\nevent: ";
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
            carry.extend_from_slice(&buf[..n]);
            let found = carry.windows(MARK.len()).filter(|w| *w == MARK).count();
            counted.fetch_add(found as u64, Ordering::Relaxed);
            let keep = carry.len().min(MARK.len() - 1);
            carry.drain(..carry.len() - keep);
        }
    });
    Ok(count)
}

/// A webhook receiver that accepts every connection, reads what comes and
/// never answers; its URL. It lives as long as the scenario's runtime.
pub async fn hanging_receiver() -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    actix_rt::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            actix_rt::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while matches!(conn.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    Ok(url)
}
