//! The TLS client configuration every outbound HTTPS connection uses
//! (Laravel today, webhooks later): rustls with ring, trusting the OS store
//! plus an optional private CA. Built once at start by `Gateway::start` (and
//! checked earlier by `wagate::config`), then shared as an `Arc`.
//!
//! Why the OS store (`rustls-native-certs`) and not a bundled list
//! (`webpki-roots`): operators already manage trust there — Debian's
//! `ca-certificates`, a corporate proxy's CA added with
//! `update-ca-certificates` — and it honours `SSL_CERT_FILE`/`SSL_CERT_DIR`,
//! which, as with OpenSSL, replace the platform store when set. A bundled
//! list would ignore all of that and go stale with the binary.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds an invalid PEM certificate: {source}")]
    Pem {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("{path}: a certificate is not a usable trust anchor: {source}")]
    Anchor {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("TLS protocol versions unavailable: {0}")]
    Protocol(#[source] rustls::Error),
}

/// What roots to trust beyond the OS store.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// A PEM file of extra CA certificates (`LARAVEL_CA_FILE`).
    pub extra_ca_file: Option<PathBuf>,
}

/// Reads every certificate of a PEM file; at least one, all parseable.
pub fn read_pem_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// Checks that `path` is a PEM file of usable CA certificates (start-up
/// validation of `LARAVEL_CA_FILE`); returns how many it holds.
pub fn check_ca_file(path: &Path) -> Result<usize, TlsError> {
    let mut roots = RootCertStore::empty();
    add_ca_file(&mut roots, path)?;
    Ok(roots.len())
}

fn add_ca_file(roots: &mut RootCertStore, path: &Path) -> Result<(), TlsError> {
    for cert in read_pem_certificates(path)? {
        roots.add(cert).map_err(|source| TlsError::Anchor {
            path: path.to_owned(),
            source,
        })?;
    }
    Ok(())
}

/// The roots: the OS store (or `SSL_CERT_FILE`/`SSL_CERT_DIR`) plus the
/// extra CA file. Unreadable OS entries are logged and skipped (one broken
/// file in /etc/ssl/certs must not stop the gateway); a bad extra CA file
/// is an error, since the operator named it.
pub fn root_store(settings: &TlsSettings) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::warn!(%error, "a certificate of the system trust store could not be read");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    if ignored > 0 {
        tracing::warn!(
            ignored,
            "system trust store entries that are not usable roots were ignored"
        );
    }
    if let Some(path) = &settings.extra_ca_file {
        add_ca_file(&mut roots, path)?;
    } else if added == 0 {
        tracing::warn!(
            "no trusted root certificates found (install ca-certificates, or set SSL_CERT_FILE or LARAVEL_CA_FILE): every HTTPS request will fail"
        );
    }
    Ok(roots)
}

/// The shared client configuration: TLS 1.2 and 1.3 with ring, certificates
/// and host names verified by webpki against [`root_store`], ALPN
/// `http/1.1` (awc speaks HTTP/1.1 with keep-alive to Laravel).
pub fn client_config(settings: &TlsSettings) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = root_store(settings)?;
    // An explicit provider: in a build where some other crate also enables
    // aws-lc-rs, rustls could not pick a process default.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Protocol)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_non_pem_ca_file_is_an_error_naming_it() {
        let missing = Path::new("/nonexistent/ca.pem");
        let err = read_pem_certificates(missing).unwrap_err();
        assert!(matches!(err, TlsError::Read { .. }));
        assert!(err.to_string().contains("/nonexistent/ca.pem"));

        let dir = std::env::temp_dir().join(format!("wagate-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        assert!(matches!(
            read_pem_certificates(&junk),
            Err(TlsError::NoCertificate { .. })
        ));
        let broken = dir.join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(read_pem_certificates(&broken).is_err());
        // Valid PEM around bytes that are no certificate.
        let not_der = dir.join("not-der.pem");
        std::fs::write(
            &not_der,
            "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(matches!(
            check_ca_file(&not_der),
            Err(TlsError::Anchor { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_default_config_builds_with_http11_alpn() {
        let config = client_config(&TlsSettings::default()).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }
}
