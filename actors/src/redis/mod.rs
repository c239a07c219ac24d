//! The Redis connection shared by every Redis-backed part (store, cache,
//! outbox, message queue): one multiplexed, self-reconnecting connection
//! per process, cloned, never one per request. Single node, Sentinel or
//! Cluster, chosen by [`RedisTopology`]; `rediss://` URLs speak TLS (rustls,
//! system roots or `SSL_CERT_FILE`). Built once by the `wagate` crate at
//! start; [`health`] pings it for `/health`.

pub mod health;
pub mod keys;

use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{Client, Cmd, Pipeline, RedisFuture, Value};
use secrecy::{ExposeSecret, SecretString};

/// Where Redis is. URLs may embed a password and passwords are secrets:
/// all are `SecretString`s, so `Debug` prints `[REDACTED]`; logs use
/// [`RedisSettings::describe`], which shows hosts without passwords.
#[derive(Debug, Clone)]
pub enum RedisTopology {
    /// One server (`REDIS_URL`, or `REDIS_HOST`/`REDIS_PORT`/`REDIS_PASSWORD`).
    Single { url: SecretString },
    /// A Redis Cluster (`REDIS_CLUSTER=true`, `REDIS_NODES`).
    Cluster {
        nodes: Vec<SecretString>,
        password: Option<SecretString>,
    },
    /// A master found through Sentinels (`REDIS_SENTINEL=true`,
    /// `REDIS_SENTINEL_URLS`, `REDIS_SENTINEL_MASTER`).
    Sentinel {
        urls: Vec<SecretString>,
        master: String,
        password: Option<SecretString>,
        db: i64,
    },
}

#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub topology: RedisTopology,
    /// Longest a connection attempt may take.
    pub connect_timeout: Duration,
    /// Longest a command may wait for its answer; a dead server must turn
    /// into an error quickly, not a hung request.
    pub response_timeout: Duration,
}

impl RedisSettings {
    /// Where to connect, without the password, for logs.
    pub fn describe(&self) -> String {
        match &self.topology {
            RedisTopology::Single { url } => redact(url.expose_secret()),
            RedisTopology::Cluster { nodes, .. } => format!("cluster {}", redact_all(nodes)),
            RedisTopology::Sentinel { urls, master, .. } => {
                format!("sentinel {master} via {}", redact_all(urls))
            }
        }
    }
}

/// [`redact`] on each URL of a list, comma-separated.
fn redact_all(urls: &[SecretString]) -> String {
    urls.iter()
        .map(|u| redact(u.expose_secret()))
        .collect::<Vec<_>>()
        .join(",")
}

/// `redis://:secret@host` → `redis://***@host`.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// The shared connection. Cheap to clone; every clone uses the same socket
/// (commands from many tasks are pipelined on it). Reconnects by itself.
#[derive(Clone)]
pub struct RedisConn {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(Arc<SentinelConn>),
}

/// A master found through Sentinel; re-resolved after failures, so a
/// failover moves the connection to the new master.
pub struct SentinelConn {
    sentinel: tokio::sync::Mutex<SentinelClient>,
    current: RwLock<ConnectionManager>,
    config: ConnectionManagerConfig,
}

fn manager_config(settings: &RedisSettings) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(settings.connect_timeout))
        .set_response_timeout(Some(settings.response_timeout))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(1))
}

impl RedisConn {
    /// Builds the connection. A single server is connected lazily (the
    /// gateway starts while Redis is down and reports it); Cluster and
    /// Sentinel need their topology, so they fail here when unreachable.
    pub async fn connect(settings: &RedisSettings) -> redis::RedisResult<Self> {
        let inner = match &settings.topology {
            RedisTopology::Single { url } => {
                let client = Client::open(url.expose_secret())?;
                Inner::Single(ConnectionManager::new_lazy_with_config(
                    client,
                    manager_config(settings),
                )?)
            }
            RedisTopology::Cluster { nodes, password } => {
                let mut builder =
                    ClusterClientBuilder::new(nodes.iter().map(|n| n.expose_secret()))
                        .connection_timeout(settings.connect_timeout)
                        .response_timeout(settings.response_timeout);
                if let Some(p) = password {
                    builder = builder.password(p.expose_secret());
                }
                Inner::Cluster(builder.build()?.get_async_connection().await?)
            }
            RedisTopology::Sentinel {
                urls,
                master,
                password,
                db,
            } => {
                let mut info = redis::RedisConnectionInfo::default().set_db(*db);
                if let Some(p) = password {
                    info = info.set_password(p.expose_secret());
                }
                let mut node =
                    SentinelNodeConnectionInfo::default().set_redis_connection_info(info);
                // Sentinels reached over TLS (rediss://) hand out masters that
                // speak TLS too.
                let urls: Vec<&str> = urls.iter().map(|u| u.expose_secret()).collect();
                if urls.iter().any(|u| u.starts_with("rediss://")) {
                    node = node.set_tls_mode(redis::TlsMode::Secure);
                }
                let mut sentinel = SentinelClient::build(
                    urls,
                    master.clone(),
                    Some(node),
                    SentinelServerType::Master,
                )?;
                let config = manager_config(settings);
                let client = sentinel.async_get_client().await?;
                let current = ConnectionManager::new_with_config(client, config.clone()).await?;
                Inner::Sentinel(Arc::new(SentinelConn {
                    sentinel: tokio::sync::Mutex::new(sentinel),
                    current: RwLock::new(current),
                    config,
                }))
            }
        };
        Ok(Self { inner })
    }

    /// Asks the Sentinels for the master again (after failures); a no-op
    /// for the other topologies, which reconnect by themselves.
    pub async fn reresolve(&self) -> redis::RedisResult<()> {
        if let Inner::Sentinel(s) = &self.inner {
            let client = s.sentinel.lock().await.async_get_client().await?;
            let fresh = ConnectionManager::new_with_config(client, s.config.clone()).await?;
            *s.current.write() = fresh;
        }
        Ok(())
    }

    /// Counts the keys matching `pattern` with SCAN (never KEYS), on every
    /// master when this is a Cluster.
    pub async fn count_keys(&self, pattern: &str) -> redis::RedisResult<u64> {
        let Inner::Cluster(cluster) = &self.inner else {
            let mut conn = self.clone();
            return scan_count(&mut conn, pattern, |c, cmd| {
                Box::pin(async move { cmd.query_async(c).await })
            })
            .await;
        };
        let mut cluster = cluster.clone();
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut cluster)
            .await?;
        let mut total = 0;
        for (host, port) in cluster_masters(&nodes) {
            let route = redis::cluster_routing::RoutingInfo::SingleNode(
                redis::cluster_routing::SingleNodeRoutingInfo::ByAddress { host, port },
            );
            total += scan_count(&mut cluster, pattern, move |c, cmd| {
                let route = route.clone();
                Box::pin(async move {
                    let v = c.route_command(cmd, route).await?;
                    Ok(redis::from_redis_value(v)?)
                })
            })
            .await?;
        }
        Ok(total)
    }

    /// Runs independent commands and returns their replies in order: as one
    /// pipeline on a single server or Sentinel master; on a Cluster, where a
    /// pipeline may not cross slots, concurrently, each routed to its node.
    /// Not atomic in either case: callers order their writes so that a
    /// partial run is safe.
    pub async fn query_all<T: redis::FromRedisValue>(
        &self,
        cmds: Vec<Cmd>,
    ) -> redis::RedisResult<Vec<T>> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        if let Inner::Cluster(_) = self.inner {
            let runs = cmds.into_iter().map(|cmd| {
                let mut conn = self.clone();
                async move { cmd.query_async::<T>(&mut conn).await }
            });
            return futures_util::future::try_join_all(runs).await;
        }
        let mut pipe = redis::pipe();
        for cmd in cmds {
            pipe.add_command(cmd);
        }
        pipe.query_async(&mut self.clone()).await
    }

    /// Runs commands in order, as one pipeline on a single server; one after
    /// the other on a Cluster. For writes where a partial run must be a
    /// prefix (a record before the acknowledgement it justifies).
    pub async fn run_in_order(&self, cmds: Vec<Cmd>) -> redis::RedisResult<()> {
        if let Inner::Cluster(_) = self.inner {
            for cmd in cmds {
                cmd.query_async::<Value>(&mut self.clone()).await?;
            }
            return Ok(());
        }
        self.run_all(cmds).await
    }

    /// [`RedisConn::query_all`] for commands whose replies do not matter.
    pub async fn run_all(&self, cmds: Vec<Cmd>) -> redis::RedisResult<()> {
        self.query_all::<Value>(cmds).await.map(drop)
    }

    /// `cluster`, `sentinel` or `single`, for `/health`.
    pub fn mode(&self) -> &'static str {
        match self.inner {
            Inner::Single(_) => "single",
            Inner::Cluster(_) => "cluster",
            Inner::Sentinel(_) => "sentinel",
        }
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.inner {
            Inner::Single(c) => c.req_packed_command(cmd),
            Inner::Cluster(c) => c.req_packed_command(cmd),
            Inner::Sentinel(s) => {
                let mut c = s.current.read().clone();
                Box::pin(async move { c.req_packed_command(cmd).await })
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.inner {
            Inner::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Inner::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Inner::Sentinel(s) => {
                let mut c = s.current.read().clone();
                Box::pin(async move { c.req_packed_commands(pipeline, offset, count).await })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match &self.inner {
            Inner::Single(c) => c.get_db(),
            Inner::Cluster(c) => c.get_db(),
            Inner::Sentinel(s) => s.current.read().get_db(),
        }
    }
}

type ScanReply = (u64, Vec<redis::Value>);

/// Walks a SCAN cursor to the end with `run` executing each step.
async fn scan_count<C>(
    conn: &mut C,
    pattern: &str,
    run: impl for<'c> Fn(
        &'c mut C,
        Cmd,
    ) -> futures_util::future::BoxFuture<'c, redis::RedisResult<ScanReply>>,
) -> redis::RedisResult<u64> {
    let mut cursor = 0u64;
    let mut total = 0u64;
    loop {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000);
        let (next, keys) = run(conn, cmd).await?;
        total += keys.len() as u64;
        if next == 0 {
            return Ok(total);
        }
        cursor = next;
    }
}

/// Masters' addresses from `CLUSTER NODES` output.
fn cluster_masters(nodes: &str) -> Vec<(String, u16)> {
    nodes
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let addr = fields.nth(1)?;
            let flags = fields.next()?;
            if !flags.split(',').any(|f| f == "master") || flags.contains("fail") {
                return None;
            }
            // host:port@cport[,hostname]
            let hostport = addr.split('@').next()?;
            let (host, port) = hostport.rsplit_once(':')?;
            Some((host.to_owned(), port.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn cluster_masters_are_read_from_cluster_nodes() {
        let out = "07c3 127.0.0.1:30004@31004 slave e7d1 0 1426238317239 4 connected\n\
                   e7d1 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460\n\
                   67ed 127.0.0.1:30002@31002 master,fail - 0 0 2 connected 5461-10922\n";
        assert_eq!(cluster_masters(out), vec![("127.0.0.1".to_owned(), 30001)]);
    }

    use super::*;

    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(
            redact("redis://:hunter2@db:6379/0"),
            "redis://***@db:6379/0"
        );
        assert_eq!(redact("redis://db:6379"), "redis://db:6379");
    }
}
