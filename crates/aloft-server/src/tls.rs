//! TLS: the operator's certificate, or a self-signed one made in the data folder on first start.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sha2::{Digest, Sha256};

/// Where the certificate and key come from.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// Whether aloft generated them.
    pub generated: bool,
}

/// Uses the given files, or creates `tls/server.crt` + `tls/server.key` in `data_dir` for
/// `localhost`, `127.0.0.1`, `::1` and the host of `public_url`.
pub fn ensure(
    data_dir: &Path,
    cert: Option<&Path>,
    key: Option<&Path>,
    public_url: Option<&str>,
) -> anyhow::Result<TlsFiles> {
    match (cert, key) {
        (Some(c), Some(k)) => {
            return Ok(TlsFiles {
                cert: c.to_owned(),
                key: k.to_owned(),
                generated: false,
            });
        }
        (None, None) => {}
        _ => anyhow::bail!("--tls-cert and --tls-key go together"),
    }
    let dir = data_dir.join("tls");
    fs_err::create_dir_all(&dir)?;
    let cert_path = dir.join("server.crt");
    let key_path = dir.join("server.key");
    if !(cert_path.exists() && key_path.exists()) {
        let mut names = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        if let Some(host) = public_url.and_then(host_of)
            && !names.contains(&host)
        {
            names.push(host);
        }
        let certified = rcgen::generate_simple_self_signed(names)
            .context("generating a self-signed certificate")?;
        crate::files::write_private(&key_path, certified.signing_key.serialize_pem().as_bytes())?;
        crate::files::write_private(&cert_path, certified.cert.pem().as_bytes())?;
    }
    Ok(TlsFiles {
        cert: cert_path,
        key: key_path,
        generated: true,
    })
}

/// The SHA-256 fingerprint (colon-separated hex) of the first certificate in a PEM file.
pub fn fingerprint(cert: &Path) -> anyhow::Result<String> {
    let text = fs_err::read_to_string(cert)?;
    let block = pem::parse(&text).with_context(|| format!("{} is not PEM", cert.display()))?;
    let digest = Sha256::digest(block.contents());
    Ok(digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":"))
}

fn host_of(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next()?;
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    (!host.is_empty()).then(|| host.to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_of_urls() {
        assert_eq!(
            super::host_of("https://ota.example.com:8443/x").as_deref(),
            Some("ota.example.com")
        );
        assert_eq!(super::host_of("https://[::1]:8443").as_deref(), Some("::1"));
        assert_eq!(super::host_of("10.0.0.1").as_deref(), Some("10.0.0.1"));
    }
}
