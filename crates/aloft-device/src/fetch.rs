//! Opening an artifact from an HTTP(S) URL as a stream (standalone `aloft install URL`).
//!
//! Owns: the HTTP client setup (rustls; trusted roots: the built-in web PKI roots, or only the
//! certificates given, as Mender's `--trusted-certs`). Must not: buffer the body; the artifact
//! reader consumes it as it arrives. Resume across failures belongs to the daemon's downloader.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

/// Why the artifact could not be fetched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The trusted certificate file is unusable.
    #[error("cannot use trusted certificates {path}: {reason}")]
    Certs {
        /// The PEM file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The request failed or the server answered with an error.
    #[error("cannot download {url}")]
    Http {
        /// The URL.
        url: String,
        /// The HTTP error.
        #[source]
        source: ureq::Error,
    },
}

/// TLS settings trusting only the certificates of a PEM file, or the built-in web PKI roots
/// without one.
pub fn tls_config(trusted_certs: Option<&Path>) -> Result<TlsConfig, FetchError> {
    let mut tls = TlsConfig::builder();
    if let Some(path) = trusted_certs {
        let certs_err = |reason: String| FetchError::Certs {
            path: path.display().to_string(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| certs_err(e.to_string()))?;
        let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(PemItem::Certificate(c)) => Some(Ok(c)),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<_, _>>()
            .map_err(|e| certs_err(e.to_string()))?;
        if certs.is_empty() {
            return Err(certs_err("no certificate in the file".into()));
        }
        tls = tls.root_certs(RootCerts::Specific(std::sync::Arc::new(certs)));
    }
    Ok(tls.build())
}

/// Starts downloading `url`; the returned reader streams the body.
pub fn open_url(
    url: &str,
    trusted_certs: Option<&Path>,
) -> Result<Box<dyn Read + Send>, FetchError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(tls_config(trusted_certs)?)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_body(None)
        .build()
        .into();
    let response = agent.get(url).call().map_err(|source| FetchError::Http {
        url: url.to_owned(),
        source,
    })?;
    Ok(Box::new(response.into_body().into_reader()))
}
