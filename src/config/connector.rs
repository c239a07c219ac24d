//! `[connector]` (simulator or real phones), `[whatsapp]` (the whatsapp-web
//! connector's data directory, relay URL, version, threads, presence) and
//! `[simulator]` (the fake network's timings and failures). Used by
//! `Config::gateway` and by the production guard.

use std::time::Duration;

use serde::Deserialize;
use wagate_actors::connector::simulator::SimulatorConfig;
#[cfg(feature = "whatsapp-web")]
use wagate_actors::connector::whatsapp::{Presence, WhatsAppConfig};
use wagate_actors::ConnectorChoice;

use super::rules::{invalid, lenient_string};
#[cfg(feature = "whatsapp-web")]
use super::rules::{non_empty, per_core};
use super::ConfigError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectorKind {
    Simulator,
    WhatsappWeb,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorSection {
    pub kind: ConnectorKind,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatsAppSection {
    pub data_dir: String,
    #[serde(deserialize_with = "lenient_string")]
    pub url: String,
    #[serde(deserialize_with = "lenient_string")]
    pub version: String,
    pub threads: usize,
    /// Forward status posts, newsletters and broadcast lists as messages.
    pub forward_status: bool,
    pub presence: WaPresence,
}

/// `WA_PRESENCE`: what linked devices announce once online.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WaPresence {
    /// Keeps the phone's notifications on (the default).
    Unavailable,
    Available,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatorSection {
    pub qr_first_ms: u64,
    pub qr_rotate_ms: u64,
    pub qr_count: u32,
    pub reconnect_ms: u64,
    pub send_latency_ms: u64,
    pub send_fail_first: u32,
    pub send_fail_rate: f64,
    /// `SIM_NOT_ON_WHATSAPP`: comma-separated numbers the simulated
    /// WhatsApp does not know (besides those beginning with `0`).
    #[serde(default, deserialize_with = "lenient_string")]
    pub not_on_whatsapp: String,
}

/// `WA_VERSION`: `2.3000.1023456789`, or empty to fetch the current one.
pub(super) fn parse_version(v: &str) -> Option<(u32, u32, u32)> {
    let mut parts = v.trim().split('.').map(str::parse::<u32>);
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(Ok(a)), Some(Ok(b)), Some(Ok(c)), None) => Some((a, b, c)),
        _ => None,
    }
}

impl ConnectorSection {
    /// The connector's own checks, then those of the section it uses.
    pub(super) fn validate(&self, whatsapp: &WhatsAppSection) -> Result<(), ConfigError> {
        whatsapp.validate()?;
        if self.kind == ConnectorKind::WhatsappWeb {
            if !cfg!(feature = "whatsapp-web") {
                return Err(invalid(
                    "CONNECTOR",
                    "is whatsapp-web, but this build has no whatsapp-web feature",
                ));
            }
            if whatsapp.data_dir.trim().is_empty() {
                return Err(invalid(
                    "DATA_DIR",
                    "must name a directory for the WhatsApp keys",
                ));
            }
        }
        Ok(())
    }

    pub(super) fn choice(
        &self,
        simulator: &SimulatorSection,
        whatsapp: &WhatsAppSection,
    ) -> ConnectorChoice {
        match self.kind {
            ConnectorKind::Simulator => ConnectorChoice::Simulator(simulator.simulator()),
            #[cfg(feature = "whatsapp-web")]
            ConnectorKind::WhatsappWeb => ConnectorChoice::WhatsAppWeb(whatsapp.client()),
            #[cfg(not(feature = "whatsapp-web"))]
            ConnectorKind::WhatsappWeb => {
                let _ = whatsapp;
                unreachable!("validate() refuses it")
            }
        }
    }
}

impl WhatsAppSection {
    fn validate(&self) -> Result<(), ConfigError> {
        if !self.version.trim().is_empty() && parse_version(&self.version).is_none() {
            return Err(invalid(
                "WA_VERSION",
                format!(
                    "must be three numbers like 2.3000.1023456789, got {:?}",
                    self.version
                ),
            ));
        }
        let url = self.url.trim();
        if !(url.is_empty() || url.starts_with("ws://") || url.starts_with("wss://")) {
            return Err(invalid(
                "WA_URL",
                format!("must be a ws:// or wss:// URL, got {url:?}"),
            ));
        }
        Ok(())
    }

    #[cfg(feature = "whatsapp-web")]
    fn client(&self) -> WhatsAppConfig {
        WhatsAppConfig {
            data_dir: self.data_dir.clone().into(),
            url: non_empty(&self.url),
            version: parse_version(&self.version),
            threads: per_core(self.threads),
            forward_status: self.forward_status,
            presence: match self.presence {
                WaPresence::Unavailable => Presence::Unavailable,
                WaPresence::Available => Presence::Available,
            },
        }
    }
}

impl SimulatorSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&self.send_fail_rate) {
            return Err(invalid("SIM_SEND_FAIL_RATE", "must be between 0 and 1"));
        }
        let bad = self.not_on_whatsapp.split(',').map(str::trim).find(|n| {
            let digits = n.strip_prefix('+').unwrap_or(n);
            !n.is_empty() && !digits.bytes().all(|b| b.is_ascii_digit())
        });
        if let Some(bad) = bad {
            return Err(invalid(
                "SIM_NOT_ON_WHATSAPP",
                format!("must be phone numbers separated by commas, got {bad:?}"),
            ));
        }
        Ok(())
    }

    fn simulator(&self) -> SimulatorConfig {
        let ms = Duration::from_millis;
        SimulatorConfig {
            qr_first: ms(self.qr_first_ms),
            qr_rotate: ms(self.qr_rotate_ms),
            qr_count: self.qr_count,
            reconnect_delay: ms(self.reconnect_ms),
            send_latency: ms(self.send_latency_ms),
            send_fail_first: self.send_fail_first,
            send_fail_rate: self.send_fail_rate,
            not_on_whatsapp: self
                .not_on_whatsapp
                .split(',')
                .map(|n| n.trim().trim_start_matches('+').to_owned())
                .filter(|n| !n.is_empty())
                .collect(),
        }
    }
}
