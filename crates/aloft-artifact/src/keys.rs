//! Signing and verification keys, and the `manifest.sig` signature schemes.
//!
//! Owns: PEM loading (the formats mender-artifact 3.9 loads, plus PKCS#8 for every type), key
//! generation, signing the manifest bytes and verifying a signature against a set of trusted keys.
//!
//! Schemes (the signature is over the exact bytes of `manifest`):
//! - RSA: RSASSA-PKCS1-v1_5 with SHA-256; keys below 2048 bits are refused, below 3072 a warning.
//! - ECDSA P-256 with SHA-256: written as raw `r‖s` (64 bytes), read as raw or DER; high-S
//!   signatures are accepted, since Go's signer does not normalise S.
//! - Ed25519 over the manifest bytes: an aloft extension that Mender tools cannot verify.
//!
//! Must not: log or print private key material.

use std::fmt;

use base64::Engine as _;
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey, EncodeRsaPrivateKey};
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Smallest RSA modulus accepted.
pub const RSA_MIN_BITS: usize = 2048;
/// RSA moduli below this size are accepted with a warning.
pub const RSA_RECOMMENDED_BITS: usize = 3072;
/// Size of RSA keys made by [`SigningKey::generate`].
pub const RSA_GENERATED_BITS: usize = 3072;

/// Why a key could not be loaded or made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// No PEM block the loader understands.
    #[error("no PEM key found{}", if found.is_empty() { String::new() } else { format!(" (found: {})", found.join(", ")) })]
    NoKey {
        /// Labels of the PEM blocks that were present.
        found: Vec<String>,
    },
    /// A PEM block of a known label did not decode.
    #[error("cannot decode the {label} block: {reason}")]
    Decode {
        /// The PEM label.
        label: String,
        /// What the decoder said.
        reason: String,
    },
    /// A public key where a private key is needed, or the reverse.
    #[error("{0}")]
    WrongKind(String),
    /// A key type or parameter we do not support.
    #[error("unsupported key: {0}")]
    Unsupported(String),
}

/// Why a signature did not verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The signature text is not standard, padded base64.
    #[error("manifest.sig is not valid base64: {0}")]
    Base64(String),
    /// No trusted key verified the signature.
    #[error("signature does not verify with any of the {count} trusted key(s) ({tried})")]
    NoMatchingKey {
        /// How many keys were tried.
        count: usize,
        /// Per key: its fingerprint and why it failed.
        tried: String,
    },
}

/// The kind of key to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// RSA, 3072 bits.
    Rsa,
    /// ECDSA on NIST P-256.
    Ecdsa,
    /// Ed25519 (aloft only; Mender tools cannot use it).
    Ed25519,
}

/// A signature scheme, as reported after loading a key or verifying a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "scheme")]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RsaPkcs1Sha256 {
        /// Modulus size.
        bits: usize,
    },
    /// ECDSA P-256 with SHA-256.
    EcdsaP256Sha256,
    /// Ed25519 (an aloft extension).
    Ed25519,
}

impl Algorithm {
    /// Whether Mender tools can verify this scheme.
    pub fn mender_compatible(self) -> bool {
        !matches!(self, Self::Ed25519)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RsaPkcs1Sha256 { bits } => write!(f, "RSA-{bits} PKCS#1 v1.5 SHA-256"),
            Self::EcdsaP256Sha256 => f.write_str("ECDSA P-256 SHA-256"),
            Self::Ed25519 => {
                f.write_str("Ed25519 (aloft extension, not verifiable by Mender tools)")
            }
        }
    }
}

/// A private key that signs manifests.
pub enum SigningKey {
    /// RSA private key.
    Rsa(Box<rsa::RsaPrivateKey>),
    /// ECDSA P-256 private key.
    EcdsaP256(p256::ecdsa::SigningKey),
    /// Ed25519 private key.
    Ed25519(ed25519_dalek::SigningKey),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SigningKey({}, {})",
            self.algorithm(),
            self.verifying_key().fingerprint()
        )
    }
}

impl SigningKey {
    /// Loads the first private key from PEM text. Accepts PKCS#1 `RSA PRIVATE KEY`, SEC1
    /// `EC PRIVATE KEY` (an `EC PARAMETERS` block before it is skipped) and PKCS#8 `PRIVATE KEY`.
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        let blocks = parse_pem(text)?;
        for block in &blocks {
            let der = block.contents();
            let label = block.tag();
            let decode = |reason: String| KeyError::Decode {
                label: label.to_owned(),
                reason,
            };
            let key = match label {
                "RSA PRIVATE KEY" => Self::Rsa(Box::new(
                    rsa::RsaPrivateKey::from_pkcs1_der(der).map_err(|e| decode(e.to_string()))?,
                )),
                "EC PRIVATE KEY" => Self::EcdsaP256(p256::ecdsa::SigningKey::from(
                    p256::SecretKey::from_sec1_der(der).map_err(|_| {
                        decode("not a P-256 SEC1 key (only P-256 is supported)".into())
                    })?,
                )),
                "PRIVATE KEY" => Self::from_pkcs8(der).map_err(decode)?,
                "PUBLIC KEY" | "RSA PUBLIC KEY" => {
                    return Err(KeyError::WrongKind(
                        "this is a public key; signing needs the private key".into(),
                    ));
                }
                _ => continue,
            };
            key.check_strength()?;
            return Ok(key);
        }
        Err(KeyError::NoKey {
            found: blocks.iter().map(|b| b.tag().to_owned()).collect(),
        })
    }

    fn from_pkcs8(der: &[u8]) -> Result<Self, String> {
        if let Ok(k) = rsa::RsaPrivateKey::from_pkcs8_der(der) {
            return Ok(Self::Rsa(Box::new(k)));
        }
        if let Ok(k) = p256::ecdsa::SigningKey::from_pkcs8_der(der) {
            return Ok(Self::EcdsaP256(k));
        }
        if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_der(der) {
            return Ok(Self::Ed25519(k));
        }
        Err("not an RSA, ECDSA P-256 or Ed25519 PKCS#8 key".into())
    }

    fn check_strength(&self) -> Result<(), KeyError> {
        if let Self::Rsa(k) = self {
            check_rsa_bits(k.size() * 8)?;
        }
        Ok(())
    }

    /// Makes a new random key.
    pub fn generate(kind: KeyType) -> Result<Self, KeyError> {
        let mut rng = rand_core::OsRng;
        Ok(match kind {
            KeyType::Rsa => Self::Rsa(Box::new(
                rsa::RsaPrivateKey::new(&mut rng, RSA_GENERATED_BITS)
                    .map_err(|e| KeyError::Unsupported(e.to_string()))?,
            )),
            KeyType::Ecdsa => Self::EcdsaP256(p256::ecdsa::SigningKey::random(&mut rng)),
            KeyType::Ed25519 => Self::Ed25519(ed25519_dalek::SigningKey::generate(&mut rng)),
        })
    }

    /// PEM in the format mender-artifact 3.9 loads: PKCS#1 for RSA, SEC1 for ECDSA; PKCS#8 for
    /// Ed25519 (which Mender cannot use at all).
    pub fn to_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        let fail = |e: &dyn fmt::Display| KeyError::Unsupported(e.to_string());
        match self {
            Self::Rsa(k) => k.to_pkcs1_pem(LineEnding::LF).map_err(|e| fail(&e)),
            Self::EcdsaP256(k) => ecdsa_sec1_pem(k).map_err(|e| fail(&e)),
            Self::Ed25519(k) => k.to_pkcs8_pem(LineEnding::LF).map_err(|e| fail(&e)),
        }
    }

    /// The matching public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        match self {
            Self::Rsa(k) => VerifyingKey::Rsa(k.to_public_key()),
            Self::EcdsaP256(k) => VerifyingKey::EcdsaP256(*k.verifying_key()),
            Self::Ed25519(k) => VerifyingKey::Ed25519(k.verifying_key()),
        }
    }

    /// The scheme this key signs with.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Self::Rsa(k) => Algorithm::RsaPkcs1Sha256 { bits: k.size() * 8 },
            Self::EcdsaP256(_) => Algorithm::EcdsaP256Sha256,
            Self::Ed25519(_) => Algorithm::Ed25519,
        }
    }

    /// Signs `message` and returns the raw signature bytes.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            Self::Rsa(k) => {
                let signer = rsa::pkcs1v15::SigningKey::<Sha256>::new((**k).clone());
                signer.sign(message).to_vec()
            }
            Self::EcdsaP256(k) => {
                let sig: p256::ecdsa::Signature = k.sign(message);
                sig.to_bytes().to_vec()
            }
            Self::Ed25519(k) => k.sign(message).to_bytes().to_vec(),
        }
    }

    /// Signs `manifest` and returns the `manifest.sig` content: one line of padded base64.
    pub fn sign_manifest(&self, manifest: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.sign(manifest))
    }
}

/// A public key trusted to verify manifests.
#[derive(Clone, PartialEq, Eq)]
pub enum VerifyingKey {
    /// RSA public key.
    Rsa(rsa::RsaPublicKey),
    /// ECDSA P-256 public key.
    EcdsaP256(p256::ecdsa::VerifyingKey),
    /// Ed25519 public key.
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "VerifyingKey({}, {})",
            self.algorithm(),
            self.fingerprint()
        )
    }
}

impl VerifyingKey {
    /// Loads the first public key from PEM text: `SubjectPublicKeyInfo` `PUBLIC KEY` (RSA, P-256,
    /// Ed25519) or PKCS#1 `RSA PUBLIC KEY`.
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        let blocks = parse_pem(text)?;
        for block in &blocks {
            let der = block.contents();
            let label = block.tag();
            let decode = |reason: &str| KeyError::Decode {
                label: label.to_owned(),
                reason: reason.to_owned(),
            };
            let key = match label {
                "PUBLIC KEY" => {
                    if let Ok(k) = rsa::RsaPublicKey::from_public_key_der(der) {
                        Self::Rsa(k)
                    } else if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_der(der) {
                        Self::EcdsaP256(k)
                    } else if let Ok(k) = ed25519_dalek::VerifyingKey::from_public_key_der(der) {
                        Self::Ed25519(k)
                    } else {
                        return Err(decode("not an RSA, ECDSA P-256 or Ed25519 public key"));
                    }
                }
                "RSA PUBLIC KEY" => Self::Rsa(
                    rsa::RsaPublicKey::from_pkcs1_der(der).map_err(|e| decode(&e.to_string()))?,
                ),
                "RSA PRIVATE KEY" | "EC PRIVATE KEY" | "PRIVATE KEY" => {
                    return Err(KeyError::WrongKind(
                        "this is a private key; verification takes the public key \
                         (`aloftctl key public` prints it)"
                            .into(),
                    ));
                }
                _ => continue,
            };
            if let Self::Rsa(k) = &key {
                check_rsa_bits(k.size() * 8)?;
            }
            return Ok(key);
        }
        Err(KeyError::NoKey {
            found: blocks.iter().map(|b| b.tag().to_owned()).collect(),
        })
    }

    /// `SubjectPublicKeyInfo` PEM (`PUBLIC KEY`), the format every Mender tool reads.
    pub fn to_pem(&self) -> Result<String, KeyError> {
        let out = match self {
            Self::Rsa(k) => k.to_public_key_pem(LineEnding::LF),
            Self::EcdsaP256(k) => k.to_public_key_pem(LineEnding::LF),
            Self::Ed25519(k) => k.to_public_key_pem(LineEnding::LF),
        };
        out.map_err(|e| KeyError::Unsupported(e.to_string()))
    }

    fn spki_der(&self) -> Vec<u8> {
        let der = match self {
            Self::Rsa(k) => k.to_public_key_der(),
            Self::EcdsaP256(k) => k.to_public_key_der(),
            Self::Ed25519(k) => k.to_public_key_der(),
        };
        der.map(|d| d.as_bytes().to_vec()).unwrap_or_default()
    }

    /// `SHA256:<hex>` of the DER `SubjectPublicKeyInfo`: a stable name for the key in output.
    pub fn fingerprint(&self) -> String {
        format!("SHA256:{}", hex::encode(Sha256::digest(self.spki_der())))
    }

    /// The scheme this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Self::Rsa(k) => Algorithm::RsaPkcs1Sha256 { bits: k.size() * 8 },
            Self::EcdsaP256(_) => Algorithm::EcdsaP256Sha256,
            Self::Ed25519(_) => Algorithm::Ed25519,
        }
    }

    /// A warning to show when the key is weaker than recommended.
    pub fn weakness(&self) -> Option<String> {
        match self {
            Self::Rsa(k) if k.size() * 8 < RSA_RECOMMENDED_BITS => Some(format!(
                "RSA key {} has {} bits; {RSA_RECOMMENDED_BITS} or more is recommended",
                self.fingerprint(),
                k.size() * 8
            )),
            _ => None,
        }
    }

    /// Checks a raw signature over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), String> {
        match self {
            Self::Rsa(k) => {
                let sig =
                    rsa::pkcs1v15::Signature::try_from(signature).map_err(|e| e.to_string())?;
                rsa::pkcs1v15::VerifyingKey::<Sha256>::new(k.clone())
                    .verify(message, &sig)
                    .map_err(|_| "RSA signature mismatch".to_owned())
            }
            Self::EcdsaP256(k) => {
                let sig = if signature.len() == 64 {
                    p256::ecdsa::Signature::from_slice(signature)
                } else {
                    p256::ecdsa::Signature::from_der(signature)
                }
                .map_err(|_| format!("not an ECDSA P-256 signature ({} bytes)", signature.len()))?;
                // Go signers do not normalise S; (r, n - s) is the same signature.
                let sig = sig.normalize_s().unwrap_or(sig);
                k.verify(message, &sig)
                    .map_err(|_| "ECDSA signature mismatch".to_owned())
            }
            Self::Ed25519(k) => {
                let sig = ed25519_dalek::Signature::from_slice(signature)
                    .map_err(|_| format!("not an Ed25519 signature ({} bytes)", signature.len()))?;
                k.verify_strict(message, &sig)
                    .map_err(|_| "Ed25519 signature mismatch".to_owned())
            }
        }
    }
}

/// Decodes `manifest.sig` text (padded standard base64; embedded CR/LF tolerated, as Go does).
pub fn decode_signature(text: &[u8]) -> Result<Vec<u8>, SignatureError> {
    let compact: Vec<u8> = text
        .iter()
        .copied()
        .filter(|&b| b != b'\n' && b != b'\r')
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|e| SignatureError::Base64(e.to_string()))
}

/// Verifies `signature` over `manifest` with any of `keys`; returns the index of the key that did.
pub fn verify_with_any(
    keys: &[VerifyingKey],
    manifest: &[u8],
    signature: &[u8],
) -> Result<usize, SignatureError> {
    let mut tried = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        match key.verify(manifest, signature) {
            Ok(()) => return Ok(i),
            Err(reason) => tried.push(format!("{}: {reason}", key.fingerprint())),
        }
    }
    Err(SignatureError::NoMatchingKey {
        count: keys.len(),
        tried: tried.join("; "),
    })
}

/// SEC1 `EC PRIVATE KEY` with the named-curve parameter, which Go's parser (and so
/// mender-artifact) requires although SEC1 makes it optional.
fn ecdsa_sec1_pem(key: &p256::ecdsa::SigningKey) -> Result<Zeroizing<String>, sec1::der::Error> {
    use sec1::der::Encode as _;
    let secret = Zeroizing::new(key.to_bytes());
    let public = key.verifying_key().to_encoded_point(false);
    let der = Zeroizing::new(
        sec1::EcPrivateKey {
            private_key: &secret,
            parameters: Some(sec1::EcParameters::NamedCurve(P256_OID)),
            public_key: Some(public.as_bytes()),
        }
        .to_der()?,
    );
    Ok(Zeroizing::new(pem::encode_config(
        &pem::Pem::new("EC PRIVATE KEY", der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )))
}

/// OID of the NIST P-256 curve (prime256v1).
const P256_OID: sec1::der::asn1::ObjectIdentifier =
    sec1::der::asn1::ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

fn check_rsa_bits(bits: usize) -> Result<(), KeyError> {
    if bits < RSA_MIN_BITS {
        return Err(KeyError::Unsupported(format!(
            "RSA key of {bits} bits is too weak (minimum {RSA_MIN_BITS})"
        )));
    }
    Ok(())
}

fn parse_pem(text: &str) -> Result<Vec<pem::Pem>, KeyError> {
    pem::parse_many(text).map_err(|e| KeyError::Decode {
        label: "PEM".into(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_sign_and_verify_and_reload() {
        for kind in [KeyType::Ecdsa, KeyType::Ed25519] {
            let key = SigningKey::generate(kind).unwrap();
            let pem = key.to_pem().unwrap();
            let reloaded = SigningKey::from_pem(&pem).unwrap();
            let public = VerifyingKey::from_pem(&key.verifying_key().to_pem().unwrap()).unwrap();
            assert_eq!(public, reloaded.verifying_key());
            let sig = decode_signature(reloaded.sign_manifest(b"manifest").as_bytes()).unwrap();
            assert_eq!(
                verify_with_any(std::slice::from_ref(&public), b"manifest", &sig).unwrap(),
                0
            );
            assert!(verify_with_any(&[public], b"manifesT", &sig).is_err());
        }
    }

    #[test]
    fn ecdsa_high_s_and_der_signatures_verify() {
        let key = SigningKey::generate(KeyType::Ecdsa).unwrap();
        let SigningKey::EcdsaP256(k) = &key else {
            unreachable!()
        };
        let sig: p256::ecdsa::Signature = k.sign(b"m");
        let low = sig.normalize_s().unwrap_or(sig);
        // Flip to high S: s' = n - s.
        let (r, s) = low.split_scalars();
        let high = p256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
        let public = key.verifying_key();
        public.verify(b"m", &high.to_bytes()).unwrap();
        public.verify(b"m", high.to_der().as_bytes()).unwrap();
    }

    #[test]
    fn public_key_is_refused_for_signing_and_private_for_verifying() {
        let key = SigningKey::generate(KeyType::Ed25519).unwrap();
        let public = key.verifying_key().to_pem().unwrap();
        assert!(matches!(
            SigningKey::from_pem(&public),
            Err(KeyError::WrongKind(_))
        ));
        assert!(matches!(
            VerifyingKey::from_pem(&key.to_pem().unwrap()),
            Err(KeyError::WrongKind(_))
        ));
        assert!(matches!(
            VerifyingKey::from_pem("hello"),
            Err(KeyError::NoKey { .. })
        ));
    }
}
