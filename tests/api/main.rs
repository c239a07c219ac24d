//! Integration tests: the real gateway over real HTTP, with a fake Laravel
//! (wagate-testkit) receiving what it sends. One test binary, shared helpers.

mod helpers;

mod api_errors;
mod backpressure;
mod batching;
mod bounds;
mod breaker;
mod chaos;
mod chats;
#[cfg(feature = "whatsapp-web")]
mod contract;
mod convergence;
mod crash;
mod dashboard;
mod delivery;
mod deploy;
mod deploy_k8s;
mod durability;
mod events;
mod fuzz;
mod incoming;
mod lifecycle;
mod limits;
mod messages;
mod metrics;
mod observability;
mod openapi;
mod operator_logs;
mod rate_limits;
mod real_laravel;
mod redis_tls;
mod refusals;
mod rich_messages;
mod scoped_keys;
mod security;
mod signals;
mod soak;
mod supervision;
mod tls;
mod webhooks;
#[cfg(feature = "whatsapp-web")]
mod whatsapp_chats;
#[cfg(feature = "whatsapp-web")]
mod whatsapp_crash;
#[cfg(feature = "whatsapp-web")]
mod whatsapp_device;
#[cfg(feature = "whatsapp-web")]
mod whatsapp_groups;
#[cfg(feature = "whatsapp-web")]
mod whatsapp_lid;
#[cfg(feature = "whatsapp-web")]
mod whatsapp_media;
#[cfg(feature = "whatsapp-web")]
mod whatsapp_offline;
#[cfg(feature = "whatsapp-web")]
mod whatsapp_receipts;
#[cfg(feature = "whatsapp-web")]
mod whatsapp_redelivery;
mod whatsapp_send;
