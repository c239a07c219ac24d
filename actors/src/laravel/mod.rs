//! Everything about talking to Laravel: the wire [`payload`] and its
//! [`signature`], the [`client`] actor, its signed POST (`request`) and
//! outbox replay (`replay`), the pure decisions it takes ([`attempt`]
//! verdicts, [`breaker`], [`throttle`], [`merge`] of held batches,
//! [`delivery`] health, rate-limited [`notice`]s) and the [`outbox`] stores.

pub mod attempt;
pub mod breaker;
pub mod client;
pub mod delivery;
pub mod merge;
pub mod notice;
pub mod outbox;
pub mod outbox_redis;
pub mod payload;
mod replay;
pub(crate) mod request;
pub mod signature;
pub mod throttle;
