//! The production guard: with `NODE_ENV=production` the gateway refuses to
//! start on settings that are fine for `cargo run` and unsafe on a server —
//! no API keys (the API open to anyone), the simulator connector (messages
//! reported sent that never left), the memory store (sessions, queued
//! messages and the Laravel outbox lost on restart). Each refusal names the
//! setting to change. Called by `Config::validate`.

use crate::config::{Config, ConfigError, ConnectorKind};

/// The `NODE_ENV` value that turns the guard on (the seed's convention).
pub const PRODUCTION: &str = "production";

/// True when `NODE_ENV` says production (case-insensitive, trimmed).
pub fn is_production(config: &Config) -> bool {
    config
        .server
        .environment
        .trim()
        .eq_ignore_ascii_case(PRODUCTION)
}

/// Refuses unsafe settings in production; anything goes elsewhere.
pub fn check(config: &Config) -> Result<(), ConfigError> {
    if !is_production(config) {
        return Ok(());
    }
    if config.server.api_keys().is_empty() {
        return Err(ConfigError::Invalid {
            key: "API_KEYS",
            message: "is empty, which leaves the API open to anyone; NODE_ENV=production needs at least one key".into(),
        });
    }
    if config.connector.kind == ConnectorKind::Simulator {
        return Err(ConfigError::Invalid {
            key: "CONNECTOR",
            message: "is simulator, which reports messages as sent without sending them; NODE_ENV=production needs CONNECTOR=whatsapp-web".into(),
        });
    }
    if config.redis().is_none() {
        return Err(ConfigError::Invalid {
            key: "STORE",
            message: "resolves to the memory store, which loses sessions, queued messages and the outbox on restart; NODE_ENV=production needs REDIS_URL (or REDIS_HOST, REDIS_CLUSTER, REDIS_SENTINEL)".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    // figment's Jail closures must return its (large) error type.
    #![allow(clippy::result_large_err)]
    use figment::Jail;

    use crate::config::Config;

    const KEY: &str = "a-key-long-enough-0123";

    fn refused_naming(jail_env: &[(&str, &str)], setting: &str) {
        Jail::expect_with(|jail| {
            jail.set_env("NODE_ENV", "production");
            for (k, v) in jail_env {
                jail.set_env(k, v);
            }
            let err = Config::load()
                .expect_err("production guard refuses")
                .to_string();
            assert!(err.contains(setting), "{err}");
            Ok(())
        });
    }

    #[test]
    fn production_refuses_each_unsafe_setting_by_name() {
        #[cfg(feature = "whatsapp-web")]
        refused_naming(
            &[
                ("CONNECTOR", "whatsapp-web"),
                ("REDIS_URL", "redis://r:6379"),
            ],
            "API_KEYS",
        );
        refused_naming(
            &[("API_KEYS", KEY), ("REDIS_URL", "redis://r:6379")],
            "CONNECTOR",
        );
        #[cfg(feature = "whatsapp-web")]
        refused_naming(&[("API_KEYS", KEY), ("CONNECTOR", "whatsapp-web")], "STORE");
        #[cfg(feature = "whatsapp-web")]
        refused_naming(
            &[
                ("API_KEYS", KEY),
                ("CONNECTOR", "whatsapp-web"),
                ("REDIS_URL", "redis://r:6379"),
                ("STORE", "memory"),
            ],
            "STORE",
        );
    }

    #[test]
    #[cfg(feature = "whatsapp-web")]
    fn production_starts_with_keys_a_real_connector_and_redis() {
        Jail::expect_with(|jail| {
            jail.set_env("NODE_ENV", "Production");
            jail.set_env("API_KEYS", KEY);
            jail.set_env("CONNECTOR", "whatsapp-web");
            jail.set_env("REDIS_URL", "redis://r:6379");
            assert!(Config::load().is_ok());
            Ok(())
        });
    }

    #[test]
    fn development_allows_the_zero_setup_defaults() {
        Jail::expect_with(|_| {
            assert!(Config::load().is_ok(), "no keys, simulator, memory");
            Ok(())
        });
    }

    #[test]
    fn short_keys_are_refused_without_echoing_them() {
        Jail::expect_with(|jail| {
            jail.set_env("API_KEYS", format!("{KEY},secret"));
            let err = Config::load().unwrap_err().to_string();
            assert!(err.contains("API_KEYS") && err.contains("#2"), "{err}");
            assert!(!err.contains("secret"), "the key leaked: {err}");
            jail.set_env("API_KEY_MIN_LENGTH", "4");
            assert!(Config::load().is_ok());
            jail.set_env("METRICS_KEY", "abc");
            let err = Config::load().unwrap_err().to_string();
            assert!(err.contains("METRICS_KEY"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn bind_is_an_alias_of_host() {
        Jail::expect_with(|jail| {
            jail.set_env("BIND", "127.0.0.1");
            assert_eq!(Config::load().unwrap().server.host, "127.0.0.1");
            Ok(())
        });
    }
}
