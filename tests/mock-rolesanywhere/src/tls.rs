//! The rustls server configuration (ring provider, TLS 1.2 and 1.3).

use std::io;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Builds a TLS server configuration from a PEM certificate chain and a PEM private key.
pub(crate) fn server_config(cert_pem: &str, key_pem: &str) -> io::Result<Arc<ServerConfig>> {
    let invalid = |message: String| io::Error::new(io::ErrorKind::InvalidInput, message);

    let certificates: Vec<CertificateDer<'static>> = ra_signer::pem::parse(cert_pem)
        .map_err(|e| invalid(format!("TLS certificate PEM: {e}")))?
        .into_iter()
        .filter(|block| block.label == "CERTIFICATE")
        .map(|block| CertificateDer::from(block.der.to_vec()))
        .collect();
    if certificates.is_empty() {
        return Err(invalid(
            "TLS certificate PEM has no CERTIFICATE block".into(),
        ));
    }

    let key_block = ra_signer::pem::parse(key_pem)
        .map_err(|e| invalid(format!("TLS key PEM: {e}")))?
        .into_iter()
        .find(|block| block.label.ends_with("PRIVATE KEY"))
        .ok_or_else(|| invalid("TLS key PEM has no PRIVATE KEY block".into()))?;
    let key = PrivateKeyDer::try_from(key_block.der.to_vec())
        .map_err(|e| invalid(format!("TLS private key: {e}")))?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(format!("TLS protocol versions: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .map_err(|e| invalid(format!("TLS certificate and key: {e}")))?;
    Ok(Arc::new(config))
}
