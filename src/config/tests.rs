//! The loader's tests: defaults, the old gateway's names, errors that name
//! the key, Redis from its parts, and secrets that never print.

// figment's Jail closures must return its (large) error type.
#![allow(clippy::result_large_err)]
use std::time::Duration;

use figment::Jail;
use secrecy::ExposeSecret;
#[cfg(feature = "whatsapp-web")]
use wagate_actors::connector::whatsapp::Presence;
use wagate_actors::laravel::signature::SignatureVersion;
use wagate_actors::redis::RedisTopology;
use wagate_actors::ConnectorChoice;

use super::connector::parse_version;
use super::*;

#[test]
fn defaults_match_the_seed() {
    let c = Config::defaults();
    assert_eq!(c.server.port, 4000);
    assert_eq!(c.batch.size, 50);
    assert_eq!(c.batch.interval_ms, 5000);
    assert_eq!(c.breaker.threshold, 10);
    assert_eq!(c.breaker.reset_ms, 120_000);
    assert_eq!(c.sessions.max_active, 250);
    assert_eq!(c.qr.max_concurrent, 10);
}

#[test]
fn every_env_name_is_documented_in_default_toml_and_vice_versa() {
    for (name, path) in ENV_NAMES {
        let key = path.rsplit('.').next().unwrap();
        let line = DEFAULT_TOML.lines().find(|l| {
            l.trim_start().starts_with(&format!("{key} ")) && l.contains(&format!("# {name}"))
        });
        assert!(
            line.is_some(),
            "{name} ({path}) is not documented beside its key in default.toml"
        );
    }
    for line in DEFAULT_TOML.lines().filter(|l| l.contains(" = ")) {
        if let Some(comment) = line.split("# ").nth(1) {
            let name = comment.split([':', ' ', '(']).next().unwrap();
            if name.chars().all(|c| c.is_ascii_uppercase() || c == '_') && !name.is_empty() {
                assert!(
                    ENV_NAMES.iter().any(|(n, _)| *n == name),
                    "{name} in default.toml is not mapped"
                );
            }
        }
    }
}

#[test]
fn seed_names_and_prefixed_names_override() {
    Jail::expect_with(|jail| {
        jail.set_env("PORT", "8080");
        jail.set_env("BATCH_INTERVAL", "250");
        jail.set_env("API_KEYS", "k1-0123456789abcd, 1234567890123456");
        jail.set_env("LARAVEL_TOKEN", "98765");
        jail.set_env("WAGATE_LARAVEL__MAX_RETRIES", "7");
        let c = Config::load().expect("valid");
        assert_eq!(c.server.port, 8080);
        assert_eq!(c.batch.interval_ms, 250);
        let keys: Vec<String> = c
            .server
            .api_keys()
            .iter()
            .map(|k| k.expose_secret().to_owned())
            .collect();
        assert_eq!(keys, ["k1-0123456789abcd", "1234567890123456"]);
        assert_eq!(c.laravel.token.expose_secret(), "98765");
        assert_eq!(c.laravel.max_retries, 7);
        Ok(())
    });
}

#[test]
fn redis_comes_from_the_seed_names() {
    Jail::expect_with(|jail| {
        assert!(
            Config::load().unwrap().redis().is_none(),
            "memory by default"
        );
        jail.set_env("REDIS_HOST", "cache");
        jail.set_env("REDIS_PASSWORD", "p@ss:w");
        let r = Config::load().unwrap().redis().expect("auto picks redis");
        match r.topology {
            RedisTopology::Single { url } => {
                assert_eq!(url.expose_secret(), "redis://:p%40ss%3Aw@cache:6379/0")
            }
            other => panic!("{other:?}"),
        }
        jail.set_env("REDIS_CLUSTER", "true");
        jail.set_env("REDIS_NODES", "a:7000, b:7001");
        match Config::load().unwrap().redis().expect("cluster").topology {
            RedisTopology::Cluster { nodes, password } => {
                let nodes: Vec<&str> = nodes.iter().map(|n| n.expose_secret()).collect();
                assert_eq!(nodes, vec!["redis://a:7000", "redis://b:7001"]);
                assert_eq!(password.as_ref().map(|p| p.expose_secret()), Some("p@ss:w"));
            }
            other => panic!("{other:?}"),
        }
        jail.set_env("STORE", "memory");
        assert!(Config::load().unwrap().redis().is_none());
        Ok(())
    });
    Jail::expect_with(|jail| {
        jail.set_env("STORE", "redis");
        let err = Config::load().unwrap_err().to_string();
        assert!(err.contains("STORE"), "{err}");
        Ok(())
    });
}

#[test]
fn bad_values_name_the_key() {
    Jail::expect_with(|jail| {
        jail.set_env("BATCH_SIZE", "lots");
        let err = Config::load().unwrap_err().to_string();
        assert!(
            err.contains("BATCH_SIZE (batch.size)") && err.contains("lots"),
            "{err}"
        );
        Ok(())
    });
    Jail::expect_with(|jail| {
        jail.set_env("BATCH_SIZE", "0");
        let err = Config::load().unwrap_err().to_string();
        assert!(err.contains("BATCH_SIZE"), "{err}");
        Ok(())
    });
    Jail::expect_with(|jail| {
        jail.set_env("LARAVEL_API", "ftp://x");
        let err = Config::load().unwrap_err().to_string();
        assert!(err.contains("LARAVEL_API"), "{err}");
        Ok(())
    });
    Jail::expect_with(|jail| {
        jail.set_env("CONNECTOR", "telegram");
        let err = Config::load().unwrap_err().to_string();
        assert!(err.contains("CONNECTOR (connector.kind)"), "{err}");
        Ok(())
    });
}

#[test]
fn laravel_ca_file_is_checked_at_start() {
    Jail::expect_with(|jail| {
        jail.set_env("LARAVEL_CA_FILE", "/nonexistent/ca.pem");
        let err = Config::load().unwrap_err().to_string();
        assert!(
            err.contains("LARAVEL_CA_FILE") && err.contains("/nonexistent/ca.pem"),
            "{err}"
        );
        Ok(())
    });
    Jail::expect_with(|jail| {
        jail.create_file("junk.pem", "not a certificate")?;
        jail.set_env("LARAVEL_CA_FILE", "junk.pem");
        let err = Config::load().unwrap_err().to_string();
        assert!(err.contains("LARAVEL_CA_FILE"), "{err}");
        Ok(())
    });
    Jail::expect_with(|jail| {
        let ca = wagate_testkit::TestCa::new("config test CA");
        jail.create_file("ca.pem", &ca.pem())?;
        jail.set_env("LARAVEL_CA_FILE", "ca.pem");
        jail.set_env("LARAVEL_DEGRADED_AFTER", "30");
        let c = Config::load().expect("a PEM CA file is accepted");
        let g = c.gateway();
        assert_eq!(
            g.tls.extra_ca_file.as_deref(),
            Some(std::path::Path::new("ca.pem"))
        );
        assert_eq!(g.laravel.degraded_after, Duration::from_secs(30));
        assert_eq!(g.laravel.replay_max_items, c.batch.size);
        Ok(())
    });
    Jail::expect_with(|jail| {
        jail.set_env("LARAVEL_DEGRADED_AFTER", "0");
        let err = Config::load().unwrap_err().to_string();
        assert!(err.contains("LARAVEL_DEGRADED_AFTER"), "{err}");
        Ok(())
    });
}

#[test]
fn signature_version_defaults_to_2_and_only_1_or_2_start() {
    Jail::expect_with(|_| {
        let c = Config::load().expect("valid");
        assert_eq!(c.gateway().laravel.signature_version, SignatureVersion::V2);
        Ok(())
    });
    Jail::expect_with(|jail| {
        jail.set_env("LARAVEL_SIGNATURE_VERSION", "1");
        let c = Config::load().expect("valid");
        assert_eq!(c.gateway().laravel.signature_version, SignatureVersion::V1);
        Ok(())
    });
    Jail::expect_with(|jail| {
        jail.set_env("LARAVEL_SIGNATURE_VERSION", "3");
        let err = Config::load().unwrap_err().to_string();
        assert!(
            err.contains("LARAVEL_SIGNATURE_VERSION") && err.contains("got 3"),
            "{err}"
        );
        Ok(())
    });
}

#[test]
#[cfg(feature = "whatsapp-web")]
fn whatsapp_web_settings_parse_and_bad_ones_name_the_key() {
    Jail::expect_with(|jail| {
        jail.set_env("CONNECTOR", "whatsapp-web");
        jail.set_env("DATA_DIR", "/var/lib/wagate");
        jail.set_env("WA_VERSION", "2.3000.1023456789");
        let c = Config::load().expect("valid");
        assert_eq!(c.connector.kind, ConnectorKind::WhatsappWeb);
        assert_eq!(
            parse_version(&c.whatsapp.version),
            Some((2, 3000, 1023456789))
        );
        assert!(matches!(
            c.gateway().connector,
            ConnectorChoice::WhatsAppWeb(ref wa) if wa.data_dir.ends_with("wagate")
                && wa.presence == Presence::Unavailable
                && !wa.forward_status
        ));
        jail.set_env("WA_PRESENCE", "available");
        jail.set_env("WA_FORWARD_STATUS", "true");
        let c = Config::load().expect("valid");
        assert!(matches!(
            c.gateway().connector,
            ConnectorChoice::WhatsAppWeb(ref wa)
                if wa.presence == Presence::Available && wa.forward_status
        ));
        Ok(())
    });
    for (key, value) in [
        ("WA_VERSION", "latest"),
        ("WA_URL", "http://relay"),
        ("WA_PRESENCE", "away"),
    ] {
        Jail::expect_with(|jail| {
            jail.set_env(key, value);
            let err = Config::load().unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
            Ok(())
        });
    }
}

#[test]
fn secrets_never_show_in_debug_output() {
    Jail::expect_with(|jail| {
        let secrets = [
            ("LARAVEL_TOKEN", "tok-7f3a9c1e5b2d4068"),
            ("LARAVEL_SIGNING_SECRET", "sig-0d8e6b4a2c9f7135"),
            ("API_KEYS", "key-5c7e9a1b3d2f4608,key-2b4d6f8a0c1e3579"),
            ("METRICS_KEY", "met-9a7c5e3b1d0f2468"),
            ("REDIS_PASSWORD", "pw-6e4c2a0b8d9f1357"),
        ];
        for (name, value) in secrets {
            jail.set_env(name, value);
        }
        jail.set_env("REDIS_URL", "redis://:url-3f5b7d9c1a2e4680@cache:6379/0");
        let c = Config::load().expect("valid");
        assert_eq!(c.laravel.token.expose_secret(), "tok-7f3a9c1e5b2d4068");
        // The actor system's settings carry the same secrets on.
        let printed = format!("{c:?} {c:#?} {:?} {:?}", c.gateway(), c.redis());
        for needle in [
            "tok-7f3a", "sig-0d8e", "key-5c7e", "key-2b4d", "met-9a7c", "pw-6e4c", "url-3f5b",
        ] {
            assert!(!printed.contains(needle), "{needle} leaked: {printed}");
        }
        assert!(printed.contains("REDACTED"), "{printed}");
        Ok(())
    });
}
