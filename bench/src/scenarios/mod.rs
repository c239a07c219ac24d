//! The benchmark scenarios of the report, each runnable alone.

pub mod intake;
pub mod media;
pub mod outage;
pub mod priority;
pub mod qr_storm;
pub mod scale;
pub mod soak;
