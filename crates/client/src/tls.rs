//! Trust for `wss://` servers: the operating system's root certificates, plus the CA
//! certificates of a file the user names (a server with a self-signed certificate). Built once
//! per client when it connects and kept for its reconnections. rustls with its `ring`
//! provider; TLS 1.2 and 1.3.

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject as _};
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use crate::error::ConnectionError;

/// The TLS configuration for a `wss://` server: the system's roots and those in `ca_cert`.
pub(crate) fn client_config(ca_cert: Option<&Path>) -> Result<Arc<ClientConfig>, ConnectionError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    if !native.errors.is_empty() {
        tracing::debug!(
            errors = native.errors.len(),
            "some system root certificates could not be loaded"
        );
    }
    let (_, ignored) = roots.add_parsable_certificates(native.certs);
    if ignored > 0 {
        tracing::debug!(ignored, "some system root certificates are unusable");
    }
    if let Some(path) = ca_cert {
        let bad = |reason: String| ConnectionError::CaCert {
            path: path.to_owned(),
            reason,
        };
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| bad(pem_reason(&e)))?;
        if certs.is_empty() {
            return Err(bad("no certificate in the file".into()));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| bad(format!("not a usable CA certificate ({e})")))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectionError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn pem_reason(error: &pem::Error) -> String {
    match error {
        pem::Error::Io(e) => e.to_string(),
        pem::Error::NoItemsFound => "no certificate in the file".into(),
        _ => "not a PEM file of certificates".into(),
    }
}

/// The TLS failure inside an I/O error from the TLS handshake, if it is one: rustls reports
/// an untrusted certificate as an I/O error of kind `InvalidData` wrapping its own error.
pub(crate) fn tls_failure(error: &io::Error) -> Option<String> {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .map(|e| match e {
            rustls::Error::InvalidCertificate(reason) => format!(
                "the server's certificate is not trusted ({reason:?}): it is not signed by a \
                 trusted CA, or not for this host name"
            ),
            other => other.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_certificates_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        assert!(matches!(
            client_config(Some(&missing)),
            Err(ConnectionError::CaCert { path, .. }) if path == missing
        ));
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "hello\n").unwrap();
        let error = client_config(Some(&junk)).unwrap_err();
        assert!(error.to_string().contains("no certificate"), "{error}");
        assert!(client_config(None).is_ok());
    }
}
