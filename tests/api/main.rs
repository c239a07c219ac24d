//! Integration tests: the real gateway over real HTTP, with a fake Laravel
//! (wagate-testkit) receiving what it sends. One test binary, shared helpers.

mod helpers;

mod api_errors;
mod batching;
mod breaker;
#[cfg(feature = "whatsapp-web")]
mod contract;
mod crash;
mod deploy;
mod durability;
mod lifecycle;
mod messages;
mod metrics;
mod signals;
mod supervision;
#[cfg(feature = "whatsapp-web")]
mod whatsapp_device;
#[cfg(feature = "whatsapp-web")]
mod whatsapp_offline;
