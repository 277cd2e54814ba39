//! The HTTPS client: ureq with rustls, system roots plus an optional CA bundle, proxies
//! from the environment.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use crate::error::Error;

/// System CA bundle paths on the distributions devices commonly run.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
];

/// Settings of the HTTPS client.
#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    /// Extra trusted CA certificates (PEM), from `--ca-bundle` or `AWS_CA_BUNDLE`.
    pub ca_bundle: Option<PathBuf>,
    /// Skip server certificate verification (`--no-verify-ssl`). Never in production.
    pub no_verify: bool,
    /// Limit for one whole request, connect to last byte.
    pub timeout: Option<Duration>,
}

/// Builds the client. Trusts the system bundle (`SSL_CERT_FILE` or the usual paths) plus
/// `ca_bundle`; with neither available it falls back to the Mozilla roots built in.
/// `HTTPS_PROXY`, `ALL_PROXY` and `NO_PROXY` are honoured.
pub fn agent(options: &HttpOptions) -> Result<ureq::Agent, Error> {
    let mut roots: Vec<Certificate<'static>> = Vec::new();
    let system = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .or_else(|| {
            SYSTEM_BUNDLES
                .iter()
                .map(PathBuf::from)
                .find(|p| p.exists())
        });
    if let Some(path) = system {
        match read_pem_certificates(&path) {
            Ok(mut certs) => roots.append(&mut certs),
            Err(e) => log::warn!("ignoring system CA bundle: {e}"),
        }
    }
    let extra = options.ca_bundle.is_some();
    if let Some(path) = &options.ca_bundle {
        roots.append(&mut read_pem_certificates(path)?);
    }
    let root_certs = if roots.is_empty() {
        log::debug!("no system CA bundle found; using the built-in Mozilla roots");
        RootCerts::WebPki
    } else {
        log::debug!(
            "trusting {} CA certificates (extra bundle: {extra})",
            roots.len()
        );
        RootCerts::new_with_certs(&roots)
    };
    if options.no_verify {
        log::warn!(
            "--no-verify-ssl: the server certificate is NOT verified; anyone on the network \
             path can read and alter the credentials"
        );
    }
    let tls = TlsConfig::builder()
        .root_certs(root_certs)
        .disable_verification(options.no_verify)
        .build();
    let config = ureq::Agent::config_builder()
        .tls_config(tls)
        .proxy(ureq::Proxy::try_from_env())
        .http_status_as_error(false)
        .timeout_global(options.timeout)
        .user_agent(concat!("ra-agent/", env!("CARGO_PKG_VERSION")))
        .build();
    Ok(config.into())
}

fn read_pem_certificates(path: &Path) -> Result<Vec<Certificate<'static>>, Error> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::Usage(format!("cannot read CA bundle {}: {e}", path.display())))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&bytes) {
        match item {
            Ok(PemItem::Certificate(cert)) => certs.push(cert),
            Ok(_) => {}
            Err(e) => {
                return Err(Error::Usage(format!(
                    "invalid CA bundle {}: {e}",
                    path.display()
                )));
            }
        }
    }
    if certs.is_empty() {
        return Err(Error::Usage(format!(
            "invalid CA bundle {}: no PEM certificate found",
            path.display()
        )));
    }
    Ok(certs)
}
