//! `[media]`: incoming media (what someone sent to a linked account): how
//! long it is kept, the base of the signed URLs Laravel gets and their key,
//! and inline base64 for small files. Used by `Config::gateway`; the
//! public URL's default needs the bound port, so `Application::build`
//! fills it ([`MediaSection::public_url`]).

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use wagate_actors::incoming_media::IncomingMediaConfig;

use super::rules::{invalid, lenient_secret, non_empty, non_empty_secret, positive};
use super::ConfigError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaSection {
    /// `MEDIA_TTL`: seconds incoming media and its URL live.
    pub ttl_secs: u64,
    /// `MEDIA_URL_SECRET`: key of the URL tokens; empty = the Laravel
    /// signing secret.
    #[serde(deserialize_with = "lenient_secret")]
    pub url_secret: SecretString,
    /// `PUBLIC_URL`: how Laravel reaches this gateway; empty = the bound
    /// address.
    pub public_url: String,
    /// `MEDIA_INLINE_MAX`: bytes up to which media also travels as base64.
    pub inline_max: usize,
}

impl MediaSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        positive("MEDIA_TTL", self.ttl_secs)?;
        match non_empty(&self.public_url) {
            Some(u) if !(u.starts_with("http://") || u.starts_with("https://")) => Err(invalid(
                "PUBLIC_URL",
                format!("must be an http:// or https:// URL, not {u:?}"),
            )),
            _ => Ok(()),
        }
    }

    /// The actor system's settings. The URL key falls back to the Laravel
    /// signing secret, then to a random one (URLs then die with the
    /// process and differ between nodes: a warning says so).
    pub(super) fn incoming(&self, signing_secret: &SecretString) -> IncomingMediaConfig {
        let secret = non_empty_secret(&self.url_secret)
            .or_else(|| non_empty_secret(signing_secret))
            .unwrap_or_else(|| {
                tracing::warn!("neither MEDIA_URL_SECRET nor LARAVEL_SIGNING_SECRET is set: incoming media URLs are signed with a random key and stop working when the gateway restarts");
                IncomingMediaConfig::random_secret()
            });
        IncomingMediaConfig {
            ttl: Duration::from_secs(self.ttl_secs),
            public_url: non_empty(&self.public_url)
                .map(|u| u.trim_end_matches('/').to_owned())
                .unwrap_or_default(),
            secret,
            inline_max: self.inline_max,
        }
    }

    /// `PUBLIC_URL` when set, else `http://<host>:<port>` of the bound
    /// listener (loopback for an unspecified bind address).
    pub fn public_url(configured: &str, bound: std::net::SocketAddr) -> String {
        if !configured.is_empty() {
            return configured.to_owned();
        }
        let ip = match bound.ip() {
            ip if ip.is_unspecified() => "127.0.0.1".to_owned(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        format!("http://{ip}:{}", bound.port())
    }
}
