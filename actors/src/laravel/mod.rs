//! Everything about talking to Laravel: the wire [`payload`] and its
//! [`signature`], the
//! [`breaker`], the [`outbox`] and the [`client`] actor that uses them.

pub mod breaker;
pub mod client;
pub mod outbox;
pub mod outbox_redis;
pub mod payload;
pub mod signature;
