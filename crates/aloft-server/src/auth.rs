//! Credentials: the server's token key, JWTs for users and devices, password hashes, device
//! request signatures, and signed download URLs.
//!
//! Tokens are Ed25519-signed JWTs whose `aud` says who they are for (`aloft-device` or
//! `aloft-management`); every token is also a row in the store, so logout, PAT deletion and
//! device rejection revoke it at once.

use std::path::Path;

use anyhow::Context as _;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Audience of device tokens.
pub const AUD_DEVICE: &str = "aloft-device";
/// Audience of user tokens (sessions and PATs).
pub const AUD_MANAGEMENT: &str = "aloft-management";
/// Issuer of every token.
pub const ISSUER: &str = "aloft";

/// The claims of every token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Token id (the store key).
    pub jti: String,
    /// User or device id.
    pub sub: String,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Issued at (seconds).
    pub iat: i64,
    /// Expiry (seconds); far in the future for tokens that never expire.
    pub exp: i64,
    /// Mender's marker of device tokens.
    #[serde(
        rename = "mender.device",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub device: Option<bool>,
    /// Mender's marker of user tokens.
    #[serde(
        rename = "mender.user",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub user: Option<bool>,
}

/// The server's secrets, loaded from (or created in) the data folder.
pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    url_secret: Vec<u8>,
    fingerprint: String,
}

impl Keys {
    /// Loads `jwt-ed25519.pem` and `url-secret` from `dir`, creating them (mode 0600) on first
    /// start.
    pub fn load_or_create(dir: &Path) -> anyhow::Result<Self> {
        let key_path = dir.join("jwt-ed25519.pem");
        let signing = if key_path.exists() {
            let pem = fs_err::read_to_string(&key_path)?;
            ed25519_dalek::SigningKey::from_pkcs8_pem(&pem)
                .with_context(|| format!("{} is not an Ed25519 PKCS#8 key", key_path.display()))?
        } else {
            let key = ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng);
            let pem = key
                .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
                .context("encoding the token key")?;
            crate::files::write_private(&key_path, pem.as_bytes())?;
            key
        };
        let secret_path = dir.join("url-secret");
        let url_secret = if secret_path.exists() {
            fs_err::read(&secret_path)?
        } else {
            let mut s = vec![0u8; 32];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut s);
            crate::files::write_private(&secret_path, &s)?;
            s
        };
        Self::from_signing_key(&signing, url_secret)
    }

    /// Keys from a given signing key (tests).
    pub fn from_signing_key(
        signing: &ed25519_dalek::SigningKey,
        url_secret: Vec<u8>,
    ) -> anyhow::Result<Self> {
        let pem = signing
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .context("encoding the token key")?;
        let public = signing
            .verifying_key()
            .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .context("encoding the token public key")?;
        // Names the keys without revealing them: the public key and a hash of the secret.
        let mut h = Sha256::new();
        h.update(public.as_bytes());
        h.update(Sha256::digest(&url_secret));
        let fingerprint = hex::encode(&h.finalize()[..8]);
        Ok(Self {
            encoding: EncodingKey::from_ed_pem(pem.as_bytes()).context("token key")?,
            decoding: DecodingKey::from_ed_pem(public.as_bytes()).context("token public key")?,
            url_secret,
            fingerprint,
        })
    }

    /// A short name of the token key and URL secret, equal on replicas that share them.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Signs claims into a compact JWT.
    pub fn issue(&self, claims: &Claims) -> anyhow::Result<String> {
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), claims, &self.encoding)
            .context("signing a token")
    }

    /// Verifies a JWT's signature, expiry and audience.
    pub fn verify(&self, token: &str, audience: &str) -> Result<Claims, String> {
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_audience(&[audience]);
        v.set_issuer(&[ISSUER]);
        v.leeway = 0;
        v.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &v)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => "token expired".to_owned(),
                jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                    "token not valid for this API".to_owned()
                }
                _ => "invalid token".to_owned(),
            })
    }

    /// The signature of a download URL for `artifact` valid until `expire` (UNIX seconds).
    pub fn url_signature(&self, artifact: &str, expire: i64) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.url_secret).expect("any key length");
        mac.update(artifact.as_bytes());
        mac.update(b"\n");
        mac.update(expire.to_string().as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// Checks a download URL signature (constant time).
    pub fn check_url(&self, artifact: &str, expire: i64, signature: &str) -> bool {
        let Ok(sig) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(signature) else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.url_secret).expect("any key length");
        mac.update(artifact.as_bytes());
        mac.update(b"\n");
        mac.update(expire.to_string().as_bytes());
        mac.verify_slice(&sig).is_ok()
    }
}

/// Hashes a password with argon2id and a random salt.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))
}

/// Checks a password against its stored hash.
pub fn check_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A device public key, parsed and re-serialised so that the same key always has the same text.
pub struct DeviceKey {
    key: aloft_artifact::keys::VerifyingKey,
    /// Normalised `SubjectPublicKeyInfo` PEM.
    pub pem: String,
}

impl DeviceKey {
    /// Parses a PEM public key (RSA ≥ 2048 bits, ECDSA P-256 or Ed25519).
    pub fn parse(pem: &str) -> Result<Self, String> {
        let key = aloft_artifact::keys::VerifyingKey::from_pem(pem)
            .map_err(|e| format!("bad public key: {e}"))?;
        let pem = key.to_pem().map_err(|e| format!("bad public key: {e}"))?;
        Ok(Self { key, pem })
    }

    /// Verifies a base64 `X-MEN-Signature` over the raw request body.
    pub fn verify(&self, body: &[u8], signature_b64: &str) -> Result<(), String> {
        let sig = base64::engine::general_purpose::STANDARD
            .decode(signature_b64.trim())
            .map_err(|_| "the signature is not base64".to_owned())?;
        self.key.verify(body, &sig)
    }
}

/// Canonical identity: the `id_data` object with sorted keys, and its SHA-256 (hex).
pub fn canonical_identity(id_data: &str) -> Result<(serde_json::Value, String), String> {
    let value: serde_json::Value =
        serde_json::from_str(id_data).map_err(|e| format!("id_data is not JSON: {e}"))?;
    canonical_identity_value(value)
}

/// [`canonical_identity`] of an already parsed object.
pub fn canonical_identity_value(
    value: serde_json::Value,
) -> Result<(serde_json::Value, String), String> {
    let serde_json::Value::Object(map) = &value else {
        return Err("identity data must be a JSON object".into());
    };
    if map.is_empty() {
        return Err("identity data must not be empty".into());
    }
    // serde_json's Map without `preserve_order` is a BTreeMap: serialising sorts the keys.
    let text = serde_json::to_string(&value).map_err(|e| e.to_string())?;
    let hash = hex::encode(Sha256::digest(text.as_bytes()));
    Ok((value, hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        Keys::from_signing_key(&sk, vec![1; 32]).unwrap()
    }

    fn claims(aud: &str, exp_offset: i64) -> Claims {
        let now = crate::time::now_us() / 1_000_000;
        Claims {
            jti: "j".into(),
            sub: "s".into(),
            iss: ISSUER.into(),
            aud: aud.into(),
            iat: now,
            exp: now + exp_offset,
            device: None,
            user: Some(true),
        }
    }

    #[test]
    fn tokens_check_audience_and_expiry() {
        let k = keys();
        let t = k.issue(&claims(AUD_MANAGEMENT, 60)).unwrap();
        assert!(k.verify(&t, AUD_MANAGEMENT).is_ok());
        assert_eq!(
            k.verify(&t, AUD_DEVICE).unwrap_err(),
            "token not valid for this API"
        );
        let old = k.issue(&claims(AUD_MANAGEMENT, -10)).unwrap();
        assert_eq!(k.verify(&old, AUD_MANAGEMENT).unwrap_err(), "token expired");
        let other =
            Keys::from_signing_key(&ed25519_dalek::SigningKey::from_bytes(&[8; 32]), vec![])
                .unwrap();
        assert_eq!(
            other.verify(&t, AUD_MANAGEMENT).unwrap_err(),
            "invalid token"
        );
    }

    #[test]
    fn url_signatures_bind_artifact_and_expiry() {
        let k = keys();
        let s = k.url_signature("a", 100);
        assert!(k.check_url("a", 100, &s));
        assert!(!k.check_url("a", 101, &s));
        assert!(!k.check_url("b", 100, &s));
        assert!(!k.check_url("a", 100, "%%%"));
    }

    #[test]
    fn identities_are_canonical() {
        let (_, a) = canonical_identity(r#"{"mac":"1","sn":"2"}"#).unwrap();
        let (_, b) = canonical_identity(r#"{"sn":"2","mac":"1"}"#).unwrap();
        assert_eq!(a, b);
        assert!(canonical_identity("[1]").is_err());
        assert!(canonical_identity("{}").is_err());
    }

    #[test]
    fn passwords_round_trip() {
        let h = hash_password("correct horse").unwrap();
        assert!(check_password("correct horse", &h));
        assert!(!check_password("wrong", &h));
    }
}
