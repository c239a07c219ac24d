//! Throw-away certificates for HTTPS tests: a [`TestCa`] made with rcgen at
//! test time, and [`ServerCert`]s it issues — valid, for the wrong host, or
//! expired — that [`FakeLaravel::start_tls`](crate::FakeLaravel::start_tls)
//! serves. Nothing here is trusted anywhere but in the test that made it.

use std::path::Path;
use std::sync::Arc;

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A certificate authority for one test.
pub struct TestCa {
    /// The CA's certificate and key, which sign the server certificates.
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A server certificate and its key, ready for a rustls server.
pub struct ServerCert {
    /// Leaf first; the CA is not included (the client must trust it).
    chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key (PKCS#8 DER).
    key: PrivatePkcs8KeyDer<'static>,
}

impl TestCa {
    /// A new CA named `name`, valid from 1975 to 4096.
    ///
    /// # Panics
    /// When rcgen cannot make a key or sign, which a test cannot go on without.
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new())
            .expect("no subject alternative names to parse");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("rcgen generates an ECDSA P-256 key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("rcgen self-signs a CA");
        Self { issuer }
    }

    /// The CA certificate in PEM, as an operator would put in `LARAVEL_CA_FILE`.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes [`pem`](Self::pem) to `path`.
    ///
    /// # Panics
    /// When the file cannot be written.
    pub fn write_pem(&self, path: &Path) {
        std::fs::write(path, self.pem())
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }

    /// A server certificate for `names` (DNS names or IP addresses), valid
    /// from 1975 to 4096.
    pub fn issue(&self, names: &[&str]) -> ServerCert {
        self.issue_with(names, |_| {})
    }

    /// A server certificate for `names` that expired at the start of 2021.
    pub fn issue_expired(&self, names: &[&str]) -> ServerCert {
        self.issue_with(names, |p| {
            p.not_before = date_time_ymd(2020, 1, 1);
            p.not_after = date_time_ymd(2021, 1, 1);
        })
    }

    fn issue_with(
        &self,
        names: &[&str],
        adjust: impl FnOnce(&mut CertificateParams),
    ) -> ServerCert {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params =
            CertificateParams::new(names).expect("test names are valid DNS names or IPs");
        params
            .distinguished_name
            .push(DnType::CommonName, "fake laravel");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        adjust(&mut params);
        let key = KeyPair::generate().expect("rcgen generates an ECDSA P-256 key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("rcgen signs with the CA key");
        ServerCert {
            chain: vec![cert.der().clone()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        }
    }
}

impl ServerCert {
    /// A rustls server configuration serving this certificate (HTTP/1.1).
    ///
    /// # Panics
    /// When rustls rejects the key, which rcgen's keys never are.
    pub fn server_config(&self) -> rustls::ServerConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_single_cert(
                self.chain.clone(),
                PrivateKeyDer::Pkcs8(self.key.clone_key()),
            )
            .expect("rcgen's ECDSA key matches its certificate");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config
    }
}
