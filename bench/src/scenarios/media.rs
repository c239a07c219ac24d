//! Scenario 6, media intake: many concurrent clients post documents by
//! `multipart/form-data` to connected simulated sessions of a gateway
//! backed by Redis. Accepted MiB/s, the latency of each accepted request
//! (the 202 comes once the file is in Redis and the message in the Stream),
//! and the gateway's resident memory above idle, sampled through the run:
//! uploads are streamed, so it must not grow with concurrency × file size.
//! Then: every accepted message sent and no blob left in Redis.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wagate_testkit::{Form, RedisServer};

use crate::harness::{Gateway, Percentiles};
use crate::report::{table, Report};
use crate::Opts;

const SESSIONS: usize = 16;
/// Pieces of the request body as the client streams them.
const CLIENT_CHUNK: usize = 64 * 1024;

/// Keys `wagate:blob:*` left in Redis.
fn blobs_left(redis: &RedisServer) -> Option<usize> {
    let out = Command::new("redis-cli")
        .args(["-p", &redis.port().to_string(), "--scan", "--pattern"])
        .arg("wagate:blob:*")
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).lines().count())
}

/// A document of `size` bytes that is not all alike.
fn document(size: usize) -> Vec<u8> {
    let mut b = b"%PDF-1.7\n".to_vec();
    b.extend((0..size.saturating_sub(9)).map(|i| (i as u32).wrapping_mul(2_654_435_761) as u8));
    b
}

pub async fn run(opts: &Opts, report: &mut Report, _charts: &Path) -> anyhow::Result<()> {
    let redis = RedisServer::start_with(&["--appendfsync", "everysec"]);
    let gw = Gateway::start(&[
        ("REDIS_URL", redis.url()),
        ("NODE_ID", "bench".into()),
        ("SIM_QR_FIRST_MS", "200".into()),
        ("SIM_SEND_LATENCY_MS", "0".into()),
        ("MESSAGE_MIN_GAP", "0".into()),
        ("MESSAGE_QUEUE_LIMIT", "100000000".into()),
        ("MESSAGE_QUEUE_LIMIT_PER_SESSION", "100000000".into()),
        ("CLIENT_REQUEST_TIMEOUT", "60000".into()),
    ])?;
    let ids: Vec<String> = (0..SESSIONS).map(|i| format!("media{i}")).collect();
    gw.link_all(&ids).await?;
    let (secs, clients, size) = (opts.media_secs, opts.media_clients, opts.media_bytes);
    let file = bytes::Bytes::from(document(size));
    // One warm-up send, so idle memory includes the code paths' first use.
    let warm = post_document(&gw, &ids[0], &file).await;
    if warm.0 != 202 {
        anyhow::bail!("a media send was refused: {} {}", warm.0, warm.1);
    }
    actix_rt::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = gw.rss();
    let peak_rss = Arc::new(AtomicU64::new(idle_rss));
    let started = Instant::now();
    let end = started + Duration::from_secs(secs);
    let sampler = {
        let peak = peak_rss.clone();
        let pid = gw.process.pid();
        actix_rt::spawn(async move {
            while Instant::now() < end + Duration::from_secs(1) {
                let rss = pid.map(crate::harness::rss_of).unwrap_or(0);
                peak.fetch_max(rss, Ordering::Relaxed);
                actix_rt::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let per_client = futures_util::future::join_all((0..clients).map(|c| {
        let (gw, ids, file) = (&gw, &ids, &file);
        async move {
            let (mut ok, mut refused, mut samples, mut first_error) =
                (0u64, 0u64, Vec::new(), None);
            let mut i = c;
            while Instant::now() < end {
                let t = Instant::now();
                let (status, body) = post_document(gw, &ids[i % SESSIONS], file).await;
                if status == 202 {
                    ok += 1;
                    samples.push(t.elapsed());
                } else {
                    refused += 1;
                    first_error.get_or_insert(format!("{status} {body}"));
                }
                i += clients;
            }
            (ok, refused, samples, first_error)
        }
    }))
    .await;
    let took = started.elapsed();
    let _ = sampler.await;
    let accepted: u64 = per_client.iter().map(|c| c.0).sum();
    let refused: u64 = per_client.iter().map(|c| c.1).sum();
    if let Some(e) = per_client.iter().find_map(|c| c.3.clone()) {
        eprintln!("media: first refusal: {e}");
    }
    let samples: Vec<Duration> = per_client.into_iter().flat_map(|c| c.2).collect();
    let lat = Percentiles::of(&samples);
    let mib = |b: f64| b / 1_048_576.0;
    let rate = mib((accepted * size as u64) as f64) / took.as_secs_f64();
    let growth = mib(peak_rss.load(Ordering::Relaxed).saturating_sub(idle_rss) as f64);
    // Every accepted message sent (the warm-up too), then no blob left.
    let drain_deadline = Instant::now() + Duration::from_secs(300);
    let mut sent = 0;
    while Instant::now() < drain_deadline {
        let h = gw.get("/health").await.json_or_null();
        sent = h["queues"]["messageQueue"]["completed"]
            .as_u64()
            .unwrap_or(0);
        if sent > accepted {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(250)).await;
    }
    let all_sent = started.elapsed();
    let left = blobs_left(&redis);
    let body = format!(
        "{clients} concurrent clients post {size_mib:.0} MiB documents as `multipart/form-data` \
         (streamed in {CLIENT_CHUNK} B pieces) for {secs} s to {SESSIONS} connected simulated \
         sessions (send latency 0, no pacing, `MAX_CONCURRENT_MESSAGES` at its default) on a \
         gateway backed by Redis (AOF, fsync every second). A 202 means the file is in Redis and \
         the message in the Stream. Memory is the gateway's resident set, sampled every 100 ms, \
         above its idle value after one warm-up send.\n\n{}\n",
        table(
            &[
                "accepted",
                "refused",
                "accepted MiB/s",
                "p50 ms",
                "p99 ms",
                "max ms",
                "idle RSS MiB",
                "peak growth MiB",
                "all sent after",
                "blobs left",
            ],
            &[vec![
                accepted.to_string(),
                refused.to_string(),
                format!("{rate:.1}"),
                format!("{:.1}", lat.p50),
                format!("{:.1}", lat.p99),
                format!("{:.1}", lat.max),
                format!("{:.0}", mib(idle_rss as f64)),
                format!("{growth:.0}"),
                if sent > accepted {
                    format!("{:.1} s", all_sent.as_secs_f64())
                } else {
                    format!("not all ({sent} of {})", accepted + 1)
                },
                left.map_or("n/a".into(), |n| n.to_string()),
            ]]
        ),
        size_mib = mib(size as f64),
    );
    report.section("6. Media intake (multipart)", body);
    let full = !opts.quick;
    report.target(
        "Media intake ≥ 100 MiB/s accepted (64 clients, 5 MiB documents)",
        format!("{rate:.1} MiB/s with {clients} clients"),
        full.then_some(rate >= 100.0),
    );
    report.target(
        "Media intake: resident memory < 256 MiB above idle",
        format!("{growth:.0} MiB"),
        full.then_some(growth < 256.0),
    );
    report.target(
        "Media intake: no blob left once all is sent",
        left.map_or("n/a".into(), |n| n.to_string()),
        full.then_some(left == Some(0) && sent > accepted),
    );
    Ok(())
}

/// One multipart send of `file` to `id`, streamed: the status and body.
async fn post_document(gw: &Gateway, id: &str, file: &bytes::Bytes) -> (u16, String) {
    let form = Form::new()
        .field("to", "5215512345678")
        .field("type", "document")
        .file("file", "bench.pdf", "application/pdf", file.clone());
    let pieces = form.chunks(CLIENT_CHUNK);
    let sent = gw
        .http()
        .post(format!("{}/sessions/{id}/messages", gw.base_url()))
        .insert_header(("content-type", form.content_type()))
        .send_stream(futures_util::stream::iter(
            pieces.into_iter().map(Ok::<_, std::io::Error>),
        ))
        .await;
    match sent {
        Ok(mut resp) => {
            let body = resp.body().await.unwrap_or_default();
            (
                resp.status().as_u16(),
                String::from_utf8_lossy(&body).into_owned(),
            )
        }
        Err(e) => (0, e.to_string()),
    }
}
