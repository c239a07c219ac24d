//! The rules every section shares, each written once: "must be greater than
//! 0", "0 means one per core", "empty means unset", comma lists, and the
//! lenient string/secret readers (a token of digits arrives as a number).
//! Called by the section modules beside this one.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};

use super::ConfigError;

/// `key` (named as operators set it) must not be zero.
pub(super) fn positive<T: PartialEq + Default>(
    key: &'static str,
    value: T,
) -> Result<(), ConfigError> {
    if value == T::default() {
        return Err(invalid(key, "must be greater than 0"));
    }
    Ok(())
}

/// The error for a bad `key`; `message` says what is wanted.
pub(super) fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

/// The machine's cores (at least 1).
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// A thread count setting: 0 means one per core.
pub(super) fn per_core(n: usize) -> usize {
    match n {
        0 => cores(),
        n => n,
    }
}

/// A string setting, trimmed; empty means unset.
pub(super) fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

/// A secret setting, trimmed; empty means unset. The copy is a secret too.
pub(super) fn non_empty_secret(s: &SecretString) -> Option<SecretString> {
    non_empty(s.expose_secret()).map(SecretString::from)
}

/// The non-empty items of a comma-separated setting.
pub(super) fn list(raw: &str) -> impl Iterator<Item = &str> {
    raw.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// Accepts a string or any scalar (a token of digits parses as a number).
pub(super) fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        S(String),
        I(i64),
        U(u64),
        F(f64),
        B(bool),
    }
    Ok(match Scalar::deserialize(d)? {
        Scalar::S(s) => s,
        Scalar::I(i) => i.to_string(),
        Scalar::U(u) => u.to_string(),
        Scalar::F(f) => f.to_string(),
        Scalar::B(b) => b.to_string(),
    })
}

/// [`lenient_string`] into a secret: from here on it prints as `[REDACTED]`.
pub(super) fn lenient_secret<'de, D: Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
    lenient_string(d).map(SecretString::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_refused_naming_the_key() {
        assert!(positive("X", 1u64).is_ok());
        let err = positive("BATCH_SIZE", 0usize).unwrap_err().to_string();
        assert_eq!(
            err,
            "configuration error: BATCH_SIZE must be greater than 0"
        );
    }

    #[test]
    fn zero_threads_means_one_per_core() {
        assert_eq!(per_core(3), 3);
        assert_eq!(per_core(0), cores());
    }

    #[test]
    fn blanks_are_unset() {
        assert_eq!(non_empty("  "), None);
        assert_eq!(non_empty(" a ").as_deref(), Some("a"));
        assert_eq!(list(" a, ,b ,").collect::<Vec<_>>(), ["a", "b"]);
        let s = non_empty_secret(&SecretString::from(" zq9 ")).unwrap();
        assert_eq!(s.expose_secret(), "zq9");
        assert!(!format!("{s:?}").contains("zq9"), "{s:?}");
    }
}
