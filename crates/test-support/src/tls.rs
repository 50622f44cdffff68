//! A certificate authority made up for one test, and a server certificate it signed for
//! `localhost` and `127.0.0.1`, written as PEM files: what a self-signed deployment gives its
//! users (the CA certificate to trust) and its server (`--tls-cert`, `--tls-key`).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

/// The PEM files of a test CA and of a server certificate it signed.
#[derive(Clone, Debug)]
pub struct TestCa {
    /// The CA's certificate: what clients trust (`--ca-cert`).
    pub ca_cert: PathBuf,
    /// The server's certificate, for `localhost` and `127.0.0.1` (`--tls-cert`).
    pub server_cert: PathBuf,
    /// The server certificate's private key (`--tls-key`).
    pub server_key: PathBuf,
}

impl TestCa {
    /// Generates a fresh CA and server certificate and writes them into `dir` as `ca.pem`,
    /// `server.pem` and `server.key`.
    pub fn generate(dir: &Path) -> TestCa {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Sotto test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate().expect("a CA key");
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("the CA certificate");

        let mut server_params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server parameters");
        server_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let server_key = KeyPair::generate().expect("a server key");
        let server_cert = server_params
            .signed_by(&server_key, &ca)
            .expect("the server certificate");

        let files = TestCa {
            ca_cert: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
        };
        std::fs::write(&files.ca_cert, ca.pem()).expect("writing ca.pem");
        std::fs::write(&files.server_cert, server_cert.pem()).expect("writing server.pem");
        std::fs::write(&files.server_key, server_key.serialize_pem()).expect("writing server.key");
        files
    }
}
