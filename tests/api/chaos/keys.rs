//! The chaos run's Redis audit: every key in the keyspace (SCAN) is
//! classified by pattern, and each class has its rule. Per-session cache
//! keys and per-message keys must expire; per-session records must belong
//! to a stored session; queues and journals must be empty once settled; a
//! key matching no pattern is a leak. The patterns are those of
//! `docs/durability.md` ("Keys").

use std::collections::{BTreeMap, HashSet};

use wagate_testkit::RedisServer;

use super::invariants::Check;

/// What a key must satisfy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// Must carry a TTL.
    Expires,
    /// No TTL; its session must be in `wagate:sessions`.
    OwnedBySession,
    /// A queue or journal: empty once settled.
    EmptyWhenSettled,
    /// A counter of what is unfinished (a session's queued messages, the
    /// outbox's bytes): not above 0 (or gone) once settled. Below 0 is
    /// allowed: a redelivered entry finishing twice decrements twice, which
    /// only loosens the quota and the next enqueue clamps it
    /// (`messages/redis.rs`); above 0 would tighten it for good.
    ZeroWhenSettled,
    /// Kept for good (counters, dead letter, the index set, the test's
    /// send ledger).
    Kept,
}

/// `{id}rest` split into `id` and `rest`.
fn session_tag(tagged: &str) -> Option<(&str, &str)> {
    tagged.strip_prefix('{').and_then(|r| r.split_once('}'))
}

/// The pattern `key` belongs to, its rule, and the session it names.
fn classify(key: &str) -> Option<(&'static str, Rule, Option<&str>)> {
    if let Some((id, suffix)) = key.strip_prefix("session:").and_then(session_tag) {
        return match suffix {
            ":status" => Some(("session:{id}:status", Rule::Expires, Some(id))),
            ":connection" => Some(("session:{id}:connection", Rule::Expires, Some(id))),
            ":qr" => Some(("session:{id}:qr", Rule::Expires, Some(id))),
            ":info" => Some(("session:{id}:info", Rule::OwnedBySession, Some(id))),
            ":creds" => Some(("session:{id}:creds", Rule::OwnedBySession, Some(id))),
            _ => None,
        };
    }
    if let Some(rest) = key.strip_prefix("wagate:idem:") {
        return session_tag(rest)
            .map(|(id, _)| ("wagate:idem:{session}:{key}", Rule::Expires, Some(id)));
    }
    if let Some(rest) = key.strip_prefix("wagate:queued:") {
        return session_tag(rest)
            .map(|(id, _)| ("wagate:queued:{session}", Rule::ZeroWhenSettled, Some(id)));
    }
    if key.starts_with("wagate:message:") {
        return Some(("wagate:message:{id}", Rule::Expires, None));
    }
    if key.starts_with("wagate:blob:") {
        return Some(("wagate:blob:{id}", Rule::Expires, None));
    }
    SINGLETONS
        .iter()
        .find(|(name, _)| *name == key)
        .map(|(name, rule)| (*name, *rule, None))
}

/// The gateway-wide keys (and the simulator's send ledger) with their rules.
const SINGLETONS: [(&str, Rule); 11] = [
    ("wagate:messages", Rule::EmptyWhenSettled),
    ("wagate:outbox", Rule::EmptyWhenSettled),
    ("wagate:journal:status", Rule::EmptyWhenSettled),
    ("wagate:journal:inbound", Rule::EmptyWhenSettled),
    ("{wagate:outbox}:bytes", Rule::ZeroWhenSettled),
    ("wagate:sessions", Rule::Kept),
    ("wagate:messages:dead", Rule::Kept),
    ("wagate:messages:stats", Rule::Kept),
    ("wagate:apikeys", Rule::Kept),
    ("wagate:webhooks", Rule::Kept),
    ("sim:sends", Rule::Kept),
];

/// Every key of the keyspace, by SCAN.
fn scan(redis: &RedisServer) -> Vec<String> {
    let mut keys = Vec::new();
    let mut cursor = "0".to_owned();
    loop {
        let reply = redis.command(&["SCAN", &cursor, "COUNT", "1000"]);
        let wagate_testkit::Resp::Array(parts) = reply else {
            panic!("SCAN answered {reply:?}");
        };
        cursor = parts[0].as_text().expect("a cursor");
        keys.extend(parts[1].as_strings());
        if cursor == "0" {
            return keys;
        }
    }
}

/// Classifies every key and checks its rule; `sessions` are the ids the
/// run used (a per-session key of another id is a leak).
pub fn redis_keys(redis: &RedisServer, sessions: &[String]) -> Check {
    let stored: HashSet<String> = redis
        .command(&["SMEMBERS", "wagate:sessions"])
        .as_strings()
        .into_iter()
        .collect();
    let keys = scan(redis);
    let mut by_pattern: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut violations = Vec::new();
    for key in &keys {
        let Some((pattern, rule, session)) = classify(key) else {
            violations.push(format!("{key}: matches no known pattern"));
            continue;
        };
        *by_pattern.entry(pattern).or_default() += 1;
        if let Some(id) = session {
            if !sessions.iter().any(|s| s == id) {
                violations.push(format!("{key}: a session this run never had"));
            }
        }
        let pttl = redis.command(&["PTTL", key]).as_int().unwrap_or(-2);
        let broken = match rule {
            Rule::Expires => (pttl < 0).then(|| "has no TTL".to_owned()),
            Rule::OwnedBySession => {
                let id = session.expect("per-session patterns name their session");
                if pttl >= 0 {
                    Some("expires, but is a session's durable record".to_owned())
                } else if !stored.contains(id) {
                    Some("its session is not stored (an orphan)".to_owned())
                } else {
                    None
                }
            }
            Rule::EmptyWhenSettled => {
                let kind = redis.command(&["TYPE", key]).as_text().unwrap_or_default();
                let cmd = match kind.as_str() {
                    "stream" => "XLEN",
                    "list" => "LLEN",
                    _ => "HLEN",
                };
                let n = redis.command(&[cmd, key]).as_int().unwrap_or(-1);
                (n != 0).then(|| format!("{n} entries left once settled"))
            }
            Rule::ZeroWhenSettled => {
                let v = redis.command(&["GET", key]).as_text().unwrap_or_default();
                let n: i64 = v.parse().unwrap_or(i64::MAX);
                (n > 0).then(|| format!("is {v:?} once settled"))
            }
            Rule::Kept => None,
        };
        if let Some(why) = broken {
            violations.push(format!("{key} ({pattern}): {why}"));
        }
    }
    for id in &stored {
        if redis
            .command(&["EXISTS", &format!("session:{{{id}}}:info")])
            .as_int()
            != Some(1)
        {
            violations.push(format!(
                "{id} is in wagate:sessions without its info record"
            ));
        }
    }
    Check {
        name: "every Redis key owned or expiring",
        checked: keys.len(),
        violations,
        figures: format!("{by_pattern:?}"),
    }
}
