//! Property tests of the configuration loader: any values, in any of the
//! variables operators set. Invariants: loading never panics, and neither
//! do the views built from a loaded config; a refusal names the variable
//! it refuses; a secret's value never shows in an error or in `Debug`.

// figment's Jail closures must return its (large) error type.
#![allow(clippy::result_large_err)]

use figment::Jail;
use proptest::prelude::*;

use super::*;

/// Variables whose values are secrets (printed as `[REDACTED]`).
const SECRETS: [&str; 5] = [
    "API_KEYS",
    "METRICS_KEY",
    "LARAVEL_TOKEN",
    "LARAVEL_SIGNING_SECRET",
    "REDIS_PASSWORD",
];

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        "[0-9]{1,3}(\\.[0-9]{1,3})?",
        Just("true".to_owned()),
        Just("false".to_owned()),
        "(redis|rediss|http|https)://[a-z:@/0-9.%-]{0,20}",
        // Env values cannot hold NUL; anything else goes.
        "[^\u{0}]{0,24}",
    ]
}

fn setting() -> impl Strategy<Value = (&'static str, String)> {
    (prop::sample::select(ENV_NAMES), value()).prop_map(|((name, _), v)| (name, v))
}

proptest! {
    #[test]
    fn loading_any_values_never_panics_and_refusals_name_the_variable(
        settings in prop::collection::vec(setting(), 1..4),
        secret in "zq[a-z0-9]{14,30}",
        secret_var in prop::sample::select(&SECRETS[..]),
    ) {
        // A panic inside fails the case (proptest catches it and shrinks).
        let mut result = Ok(None);
        Jail::expect_with(|jail| {
            for (name, value) in &settings {
                jail.set_env(name, value);
            }
            jail.set_env(secret_var, &secret);
            result = match Config::load() {
                Ok(config) => {
                    // The views handed to the actor system and to main.
                    let _ = config.gateway();
                    let _ = config.redis().map(|r| r.describe());
                    let _ = config.server.api_keys();
                    Ok(Some(format!("{config:?}")))
                }
                Err(e) => Err(e.to_string()),
            };
            Ok(())
        });
        match result {
            Ok(debug) => {
                let debug = debug.unwrap_or_default();
                prop_assert!(!debug.contains(&secret), "{} shows in Debug", secret_var);
            }
            Err(message) => {
                prop_assert!(!message.contains(&secret), "{} shows in the error: {}", secret_var, message);
                let mut names: Vec<&str> = settings.iter().map(|(n, _)| *n).collect();
                names.push(secret_var);
                let named = names.iter().any(|n| {
                    let path = ENV_NAMES.iter().find(|(e, _)| e == n).map(|(_, p)| *p).unwrap_or(n);
                    let key = path.rsplit('.').next().unwrap_or(path);
                    message.contains(n) || message.contains(path) || message.contains(key)
                });
                prop_assert!(named, "{:?} refused without naming a variable: {}", names, message);
            }
        }
    }
}
