//! A throwaway certificate authority and a `localhost` certificate it signs, so the test
//! servers speak real TLS and the client verifies them through `EXTRA_CA_CERTS`, as it would
//! a private CA in development.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub struct TestPki {
    /// PEM of the CA, to trust in the client.
    pub ca_pem: String,
    /// The same PEM in a file, for the processes and settings that take `EXTRA_CA_CERTS`.
    pub ca_file: PathBuf,
    pub server_config: Arc<ServerConfig>,
}

/// One PKI per test binary: key generation is the slow part.
pub fn pki() -> &'static TestPki {
    static PKI: OnceLock<TestPki> = OnceLock::new();
    PKI.get_or_init(|| {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf_params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();

        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut server_config = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(leaf.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
            )
            .unwrap();
        // Real Loki and Datadog endpoints offer both.
        server_config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let ca_pem = ca_cert.pem();
        // Per process: each test binary makes its own CA.
        let ca_file = std::env::temp_dir().join(format!("els-test-ca-{}.pem", std::process::id()));
        std::fs::write(&ca_file, &ca_pem).unwrap();
        TestPki {
            ca_pem,
            ca_file,
            server_config: Arc::new(server_config),
        }
    })
}
