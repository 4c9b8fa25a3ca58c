//! The device side of the Mender device API (`docs/reference/mender-device-protocol.md`).
//!
//! Owns: URLs, request signing, the token (in memory only, renewed on a 401 with one retry of
//! the call), the v2 → v1 fallbacks of `next`, PUT → PATCH of the inventory, and the checks on
//! every answer: nothing the server sends is used before it was bounded and validated. Must
//! not: decide what to do with a deployment (the daemon does).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use aloft_api::device::{
    AuthRequest, DeploymentInstructions, DeploymentLog, InventoryAttribute, LogMessage,
    NextRequestV2, StatusReport,
};
use aloft_artifact::SigningKey;
use aloft_device::config::DaemonConfig;
use base64::Engine as _;

/// The largest answer body read from the API (instructions, errors, tokens).
const MAX_BODY: u64 = 1 << 20;
/// The longest token accepted.
const MAX_TOKEN: usize = 16 * 1024;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The server refused the device (pending, rejected or unknown).
    #[error("the server does not accept this device (yet): it is pending, rejected or unknown")]
    Unauthorized,
    /// The deployment was aborted (409).
    #[error("the deployment was aborted on the server")]
    Aborted,
    /// An unexpected status code.
    #[error("{what}: the server answered {status}{}", if detail.is_empty() { String::new() } else { format!(" ({detail})") })]
    Status {
        /// The call.
        what: &'static str,
        /// The HTTP status.
        status: u16,
        /// The server's error text, if any (shortened).
        detail: String,
    },
    /// The answer could not be used.
    #[error("{what}: unusable answer: {reason}")]
    Invalid {
        /// The call.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// The request did not get an answer.
    #[error("{what}: {source}")]
    Transport {
        /// The call.
        what: &'static str,
        /// The transport error.
        #[source]
        source: ureq::Error,
    },
    /// The identity could not be had.
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    /// Local setup (certificates).
    #[error("{0}")]
    Setup(String),
}

/// A connection to one server.
pub struct Server {
    base: String,
    agent: ureq::Agent,
    tenant_token: String,
    key: SigningKey,
    identity_script: std::path::PathBuf,
    token: Option<String>,
}

/// What `next` answered.
#[derive(Debug)]
pub enum Next {
    /// Nothing to do.
    Nothing,
    /// A deployment.
    Deployment(DeploymentInstructions),
    /// A deployment whose instructions are unusable; it should be reported as failed.
    Invalid {
        /// Its id.
        id: String,
        /// Why.
        reason: String,
    },
}

/// `<url>` with a trailing `/` dropped and `https://` added when there is no scheme.
pub fn base_url(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    if url.contains("://") {
        url.to_owned()
    } else {
        format!("https://{url}")
    }
}

/// A deployment id is put in URL paths: only UUID-like text is accepted.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A token is sent back in a header: printable, no spaces, bounded.
fn valid_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= MAX_TOKEN
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~+/=".contains(&b))
}

fn shorten(text: &[u8]) -> String {
    let text = String::from_utf8_lossy(text);
    let detail = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| text.into_owned());
    detail
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect()
}

impl Server {
    /// A client for the server of `config`, signing with `key`.
    pub fn new(config: &DaemonConfig, key: SigningKey) -> Result<Self, ApiError> {
        let tls = aloft_device::fetch::tls_config(config.server_certificate.as_deref())
            .map_err(|e| ApiError::Setup(e.to_string()))?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .user_agent(concat!("aloft/", env!("CARGO_PKG_VERSION")))
            // Per phase, not global: a global limit makes ureq resolve the host on a new
            // thread for every request, which is most of an idle poll's cost.
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_send_request(Some(Duration::from_secs(60)))
            .timeout_send_body(Some(Duration::from_secs(60)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .timeout_recv_body(Some(Duration::from_secs(60)))
            .max_redirects(0)
            .build()
            .into();
        Ok(Self {
            base: base_url(&config.server_url),
            agent,
            tenant_token: config.tenant_token.clone(),
            key,
            identity_script: config.identity_script.clone(),
            token: None,
        })
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Whether a token is held.
    pub fn authenticated(&self) -> bool {
        self.token.is_some()
    }

    /// Forgets the token (the next call authenticates again).
    pub fn forget_token(&mut self) {
        self.token = None;
    }

    /// The host of the server URL (downloads from it trust the server certificate).
    pub fn host(&self) -> Option<&str> {
        host_of(&self.base)
    }

    /// `POST auth_requests`: the signed identity; keeps the token of a 200.
    pub fn authenticate(&mut self) -> Result<(), ApiError> {
        const WHAT: &str = "authentication";
        let request = AuthRequest {
            id_data: crate::identity::identity(&self.identity_script)?,
            pubkey: self
                .key
                .verifying_key()
                .to_pem()
                .map_err(|e| ApiError::Setup(e.to_string()))?,
            tenant_token: self.tenant_token.clone(),
        };
        let mut body = serde_json::to_vec(&request).expect("serialisable");
        body.push(b'\n');
        let signature = match &self.key {
            // Mender's servers expect ASN.1 DER for ECDSA; the key signs r‖s.
            SigningKey::EcdsaP256(_) => p256::ecdsa::Signature::from_slice(&self.key.sign(&body))
                .map(|s| s.to_der().as_bytes().to_vec())
                .map_err(|e| ApiError::Setup(e.to_string()))?,
            other => other.sign(&body),
        };
        let url = format!("{}/api/devices/v1/authentication/auth_requests", self.base);
        let mut response = self
            .agent
            .post(&url)
            .header("Content-Type", "application/json")
            .header("Authorization", format!("Bearer {}", self.tenant_token))
            .header(
                "X-MEN-Signature",
                base64::engine::general_purpose::STANDARD.encode(signature),
            )
            .send(&body[..])
            .map_err(|source| ApiError::Transport { what: WHAT, source })?;
        let status = response.status().as_u16();
        let text = read_body(&mut response, WHAT)?;
        match status {
            200 => {
                let token = String::from_utf8(text)
                    .map_err(|_| invalid(WHAT, "the token is not text"))?
                    .trim()
                    .to_owned();
                if !valid_token(&token) {
                    return Err(invalid(WHAT, "the token has characters a JWT cannot have"));
                }
                self.token = Some(token);
                tracing::info!(server = %self.base, "authenticated");
                Ok(())
            }
            401 => Err(ApiError::Unauthorized),
            _ => Err(ApiError::Status {
                what: WHAT,
                status,
                detail: shorten(&text),
            }),
        }
    }

    /// One authorised call: authenticates when no token is held, and once more on a 401.
    fn call(
        &mut self,
        what: &'static str,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<(u16, Vec<u8>), ApiError> {
        let url = format!("{}{path}", self.base);
        for attempt in 0..2 {
            if self.token.is_none() {
                self.authenticate()?;
            }
            let bearer = format!("Bearer {}", self.token.as_deref().unwrap_or_default());
            let sent = match (method, body) {
                ("GET", _) => self.agent.get(&url).header("Authorization", &bearer).call(),
                (m, Some(b)) => {
                    let req = match m {
                        "POST" => self.agent.post(&url),
                        "PATCH" => self.agent.patch(&url),
                        _ => self.agent.put(&url),
                    };
                    req.header("Authorization", &bearer)
                        .header("Content-Type", "application/json")
                        .send(b)
                }
                (_, None) => unreachable!("bodyless calls are GETs"),
            };
            let mut response = match sent {
                Ok(r) => r,
                Err(source) => {
                    // As Mender: a connection failure also renews the token next time.
                    self.token = None;
                    return Err(ApiError::Transport { what, source });
                }
            };
            let status = response.status().as_u16();
            let text = read_body(&mut response, what)?;
            if status == 401 && attempt == 0 {
                tracing::info!(what, "token refused; authenticating again");
                self.token = None;
                continue;
            }
            if status == 401 {
                self.token = None;
                return Err(ApiError::Unauthorized);
            }
            return Ok((status, text));
        }
        unreachable!("the loop returns")
    }

    /// Sends the inventory: PUT, then PATCH when the server answers 405.
    pub fn send_inventory(&mut self, attributes: &[InventoryAttribute]) -> Result<(), ApiError> {
        const WHAT: &str = "inventory";
        const PATH: &str = "/api/devices/v1/inventory/device/attributes";
        let mut body = serde_json::to_vec(attributes).expect("serialisable");
        body.push(b'\n');
        let (mut status, mut text) = self.call(WHAT, "PUT", PATH, Some(&body))?;
        if status == 405 {
            (status, text) = self.call(WHAT, "PATCH", PATH, Some(&body))?;
        }
        expect(WHAT, status, 200, &text)
    }

    /// Asks for a deployment: v2 POST with the provides, then v1 POST, then v1 GET on 404s.
    pub fn next(&mut self, provides: &BTreeMap<String, String>) -> Result<Next, ApiError> {
        const WHAT: &str = "update check";
        let v2 = serde_json::to_vec(&NextRequestV2 {
            device_provides: provides.clone(),
            update_control_map: false,
            aloft_install_control: true,
        })
        .expect("serialisable");
        let (mut status, mut text) = self.call(
            WHAT,
            "POST",
            "/api/devices/v2/deployments/device/deployments/next",
            Some(&v2),
        )?;
        if status == 404 {
            let v1 = serde_json::to_vec(provides).expect("serialisable");
            (status, text) = self.call(
                WHAT,
                "POST",
                "/api/devices/v1/deployments/device/deployments/next",
                Some(&v1),
            )?;
        }
        if status == 404 {
            let query = format!(
                "artifact_name={}&device_type={}",
                urlencode(provides.get("artifact_name").map_or("", String::as_str)),
                urlencode(provides.get("device_type").map_or("", String::as_str)),
            );
            (status, text) = self.call(
                WHAT,
                "GET",
                &format!("/api/devices/v1/deployments/device/deployments/next?{query}"),
                None,
            )?;
        }
        match status {
            204 => Ok(Next::Nothing),
            200 => Ok(parse_instructions(&text)),
            _ => Err(ApiError::Status {
                what: WHAT,
                status,
                detail: shorten(&text),
            }),
        }
    }

    /// Reports a deployment's status; `Err(Aborted)` on 409.
    pub fn report(
        &mut self,
        id: &str,
        status: &str,
        substate: Option<&str>,
    ) -> Result<(), ApiError> {
        const WHAT: &str = "status report";
        let mut body = serde_json::to_vec(&StatusReport {
            status: status.to_owned(),
            substate: substate.map(str::to_owned),
        })
        .expect("serialisable");
        body.push(b'\n');
        let path = format!("/api/devices/v1/deployments/device/deployments/{id}/status");
        let (code, text) = self.call(WHAT, "PUT", &path, Some(&body))?;
        if code == 409 {
            return Err(ApiError::Aborted);
        }
        expect(WHAT, code, 204, &text)
    }

    /// Uploads a deployment log.
    pub fn upload_log(&mut self, id: &str, messages: Vec<LogMessage>) -> Result<(), ApiError> {
        const WHAT: &str = "log upload";
        let body = serde_json::to_vec(&DeploymentLog { messages }).expect("serialisable");
        let path = format!("/api/devices/v1/deployments/device/deployments/{id}/log");
        let (code, text) = self.call(WHAT, "PUT", &path, Some(&body))?;
        expect(WHAT, code, 204, &text)
    }
}

fn invalid(what: &'static str, reason: &str) -> ApiError {
    ApiError::Invalid {
        what,
        reason: reason.to_owned(),
    }
}

fn read_body(
    response: &mut ureq::http::Response<ureq::Body>,
    what: &'static str,
) -> Result<Vec<u8>, ApiError> {
    response
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_vec()
        .map_err(|source| ApiError::Transport { what, source })
}

fn expect(what: &'static str, status: u16, want: u16, text: &[u8]) -> Result<(), ApiError> {
    if status == want {
        Ok(())
    } else {
        Err(ApiError::Status {
            what,
            status,
            detail: shorten(text),
        })
    }
}

/// Validates the instructions of a 200 `next`: an id usable in a URL, an artifact name, an
/// `http(s)` URI and at least one device type, as Mender requires.
pub fn parse_instructions(body: &[u8]) -> Next {
    let value: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return Next::Invalid {
                id: String::new(),
                reason: format!("the deployment instructions are not JSON: {e}"),
            };
        }
    };
    let id = value
        .get("id")
        .and_then(|v| v.as_str())
        .filter(|id| valid_id(id))
        .unwrap_or_default()
        .to_owned();
    let instructions: DeploymentInstructions = match serde_json::from_value(value) {
        Ok(i) => i,
        Err(e) => {
            return Next::Invalid {
                id,
                reason: format!("the deployment instructions are incomplete: {e}"),
            };
        }
    };
    let a = &instructions.artifact;
    let reason = if !valid_id(&instructions.id) {
        Some("the deployment id is not an id".to_owned())
    } else if a.artifact_name.trim().is_empty() || a.artifact_name.len() > 256 {
        Some("the artifact name is empty or too long".into())
    } else if !(a.source.uri.starts_with("https://") || a.source.uri.starts_with("http://")) {
        Some("the download URI is not http(s)".into())
    } else if a.device_types_compatible.is_empty() {
        Some("no compatible device types".into())
    } else {
        None
    };
    match reason {
        Some(reason) => Next::Invalid { id, reason },
        None => Next::Deployment(instructions),
    }
}

/// The host of an `http(s)://host[:port]/...` URL.
pub fn host_of(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.starts_with('[') {
        return host.split_once(']').map(|(h, _)| &h[1..]);
    }
    Some(host.split(':').next().unwrap_or(host))
}

fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = std::fmt::Write::write_fmt(&mut out, format_args!("%{b:02X}"));
        }
    }
    out
}

/// Whether `path` is a file the daemon may read as a certificate (for clearer setup errors).
pub fn check_certificate(path: &Path) -> Result<(), String> {
    aloft_device::fetch::tls_config(Some(path))
        .map(drop)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_are_normalised_as_mender_does() {
        assert_eq!(base_url("example.com/"), "https://example.com");
        assert_eq!(base_url("http://h:8080/prefix/"), "http://h:8080/prefix");
        assert_eq!(host_of("https://u@[::1]:443/x"), Some("::1"));
        assert_eq!(host_of("https://localhost:8443/a?b"), Some("localhost"));
    }

    #[test]
    fn forged_instructions_are_refused_with_a_reason() {
        let ok = br#"{"id":"0b8f7a0e-1","artifact":{"id":"a","artifact_name":"r2","source":{"uri":"https://h/x","expire":"z"},"device_types_compatible":["t"]}}"#;
        assert!(matches!(parse_instructions(ok), Next::Deployment(_)));
        let traversal = br#"{"id":"../../x","artifact":{"id":"a","artifact_name":"r2","source":{"uri":"https://h/x","expire":"z"},"device_types_compatible":["t"]}}"#;
        assert!(matches!(parse_instructions(traversal), Next::Invalid { id, .. } if id.is_empty()));
        let file = br#"{"id":"d1","artifact":{"id":"a","artifact_name":"r2","source":{"uri":"file:///etc/shadow","expire":"z"},"device_types_compatible":["t"]}}"#;
        assert!(
            matches!(parse_instructions(file), Next::Invalid { id, reason } if id == "d1" && reason.contains("http"))
        );
        assert!(matches!(
            parse_instructions(b"\x00garbage"),
            Next::Invalid { .. }
        ));
        assert!(!valid_token("a.b.c\r\nX-Injected: 1"));
        assert!(valid_token("eyJ0.eyJz.sig-_"));
    }
}
