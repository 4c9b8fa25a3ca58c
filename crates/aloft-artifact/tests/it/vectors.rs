//! Every artifact mender-artifact 3.9 wrote in testdata/mender-artifacts is read, and matches expected.json.

use std::collections::BTreeMap;

use aloft_artifact::{
    ArtifactError, Compression, SignatureState, SigningKey, TypeInfo, VerifyingKey, keys,
};
use aloft_testkit::{outer_members, vector_key, vectors_dir};
use serde_json::Value;

use crate::{chain, read_all};

fn expected() -> BTreeMap<String, Value> {
    let text = std::fs::read_to_string(vectors_dir().join("expected.json")).expect("expected.json");
    serde_json::from_str(&text).expect("valid JSON")
}

fn compression(name: &str) -> Compression {
    name.parse().expect("known compression")
}

fn type_info_of(text: &str) -> TypeInfo {
    serde_json::from_str(text).expect("type-info JSON")
}

#[test]
fn every_vector_matches_expected_json() {
    let all = expected();
    assert!(all.len() >= 18, "expected.json lists {} vectors", all.len());
    for (file, exp) in &all {
        let bytes = std::fs::read(vectors_dir().join(file)).unwrap();
        let (info, summary) =
            read_all(&bytes, &[]).unwrap_or_else(|e| panic!("{file}: {}", chain(&e)));
        let ctx = |what: &str| format!("{file}: {what}");

        assert_eq!(
            u64::from(info.format_version),
            exp["format_version"].as_u64().unwrap(),
            "{}",
            ctx("format")
        );
        assert_eq!(summary.artifact_size, bytes.len() as u64, "{}", ctx("size"));
        assert_eq!(
            info.manifest.to_bytes(),
            exp["manifest"].as_str().unwrap().as_bytes(),
            "{}",
            ctx("manifest")
        );
        match exp.get("manifest_augment").and_then(Value::as_str) {
            Some(m) => assert_eq!(
                info.manifest_augment.as_ref().unwrap().to_bytes(),
                m.as_bytes()
            ),
            None => assert!(info.manifest_augment.is_none(), "{}", ctx("no augment")),
        }
        let header = &exp["header"];
        assert_eq!(
            info.header_compression,
            compression(header["compression"].as_str().unwrap()),
            "{}",
            ctx("header codec")
        );
        assert_eq!(
            summary.data_compression,
            vec![compression(exp["data_compression"].as_str().unwrap())],
            "{}",
            ctx("data codec")
        );

        // header-info
        let hi: Value = serde_json::from_str(header["header_info"].as_str().unwrap()).unwrap();
        let (name, devices, ptype) = if info.format_version == 3 {
            (
                hi["artifact_provides"]["artifact_name"].clone(),
                hi["artifact_depends"]["device_type"].clone(),
                hi["payloads"][0]["type"].clone(),
            )
        } else {
            (
                hi["artifact_name"].clone(),
                hi["device_types_compatible"].clone(),
                hi["updates"][0]["type"].clone(),
            )
        };
        assert_eq!(Value::from(info.name.clone()), name, "{}", ctx("name"));
        assert_eq!(
            serde_json::to_value(&info.device_types).unwrap(),
            devices,
            "{}",
            ctx("device types")
        );
        let payload = &info.payloads[0];
        assert_eq!(
            serde_json::to_value(&payload.payload_type).unwrap(),
            ptype,
            "{}",
            ctx("payload type")
        );
        if info.format_version == 3 {
            let group = hi["artifact_provides"].get("artifact_group").cloned();
            assert_eq!(
                info.group.clone().map(Value::from),
                group,
                "{}",
                ctx("group")
            );
            // type-info
            let ti = type_info_of(header["type_info"].as_str().unwrap());
            assert_eq!(payload.type_info, ti, "{}", ctx("type-info"));
        }
        // meta-data
        let meta = header
            .get("meta_data")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty());
        assert_eq!(
            payload.meta_data.clone().map(Value::Object),
            meta.map(|m| serde_json::from_str::<Value>(m).unwrap()),
            "{}",
            ctx("meta-data")
        );
        // scripts
        let scripts: BTreeMap<String, String> = header
            .get("scripts")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v["sha256"].as_str().unwrap().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let got: BTreeMap<String, String> = info
            .scripts
            .iter()
            .map(|s| (s.name.clone(), hex::encode(s.sha256)))
            .collect();
        assert_eq!(got, scripts, "{}", ctx("scripts"));
        // payload files
        let files: Vec<(String, u64, String)> = exp["payload_files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["name"].as_str().unwrap().to_owned(),
                    f["size"].as_u64().unwrap(),
                    f["sha256"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let got: Vec<(String, u64, String)> = summary
            .files
            .iter()
            .map(|f| (f.name.clone(), f.size, hex::encode(f.sha256)))
            .collect();
        assert_eq!(got, files, "{}", ctx("payload files"));
        // signature state without keys
        let signed = !exp["signature"].is_null();
        let want = if signed {
            SignatureState::NotVerified
        } else {
            SignatureState::Unsigned
        };
        assert_eq!(info.signature, want, "{}", ctx("signature state"));
    }
}

fn key(name: &str) -> VerifyingKey {
    VerifyingKey::from_pem(&vector_key(name)).unwrap()
}

#[test]
fn signed_vectors_verify_with_the_right_key_and_fail_with_a_wrong_one() {
    let rsa = key("rsa3072-public-spki.pem");
    let ecdsa = key("ecdsa-p256-public-spki.pem");
    let stranger_rsa = VerifyingKey::from_pem(&vector_key("rsa3072-public-pkcs1.pem")).unwrap();
    assert_eq!(
        stranger_rsa, rsa,
        "PKCS#1 and SPKI encodings of one key load alike"
    );
    let stranger = SigningKey::generate(aloft_artifact::KeyType::Ecdsa)
        .unwrap()
        .verifying_key();
    let mut checked = 0;
    for (file, exp) in expected() {
        let Some(sig) = exp["signature"].as_object() else {
            continue;
        };
        let bytes = std::fs::read(vectors_dir().join(&file)).unwrap();
        let right = key(sig["verify_key"]
            .as_str()
            .unwrap()
            .trim_start_matches("keys/"));
        let (info, _) = read_all(&bytes, std::slice::from_ref(&right))
            .unwrap_or_else(|e| panic!("{file}: {}", chain(&e)));
        assert!(
            matches!(info.signature, SignatureState::Verified { ref key, .. } if *key == right.fingerprint()),
            "{file}"
        );
        // Several trusted keys at once: the right one among strangers.
        read_all(&bytes, &[stranger.clone(), right.clone()]).unwrap();
        let wrong = if right == rsa {
            ecdsa.clone()
        } else {
            rsa.clone()
        };
        for keys in [vec![wrong], vec![stranger.clone()]] {
            let err = read_all(&bytes, &keys).unwrap_err();
            assert!(
                matches!(err, ArtifactError::Signature(_)),
                "{file}: {}",
                chain(&err)
            );
        }
        checked += 1;
    }
    assert!(checked >= 4, "only {checked} signed vectors");
}

#[test]
fn unsigned_vector_is_refused_when_keys_are_required() {
    let bytes = std::fs::read(vectors_dir().join("rootfs-gzip.mender")).unwrap();
    let err = read_all(&bytes, &[key("rsa3072-public-spki.pem")]).unwrap_err();
    assert!(
        matches!(err, ArtifactError::SignatureMissing),
        "{}",
        chain(&err)
    );
}

#[test]
fn rsa_signature_is_reproduced_byte_for_byte() {
    let bytes = std::fs::read(vectors_dir().join("rootfs-signed-rsa.mender")).unwrap();
    let members = outer_members(&bytes);
    let manifest = &members.iter().find(|(n, _)| n == "manifest").unwrap().1;
    let sig = &members.iter().find(|(n, _)| n == "manifest.sig").unwrap().1;
    let signer = SigningKey::from_pem(&vector_key("rsa3072-private-pkcs1.pem")).unwrap();
    assert_eq!(signer.sign_manifest(manifest).as_bytes(), sig.as_slice());
    // The PKCS#8 encoding of the same key signs identically.
    let pkcs8 = SigningKey::from_pem(&vector_key("rsa3072-private-pkcs8.pem")).unwrap();
    assert_eq!(pkcs8.sign_manifest(manifest).as_bytes(), sig.as_slice());
}

#[test]
fn ecdsa_vector_has_high_s_and_still_verifies() {
    let bytes = std::fs::read(vectors_dir().join("rootfs-signed-ecdsa.mender")).unwrap();
    let members = outer_members(&bytes);
    let manifest = &members.iter().find(|(n, _)| n == "manifest").unwrap().1;
    let sig = keys::decode_signature(&members.iter().find(|(n, _)| n == "manifest.sig").unwrap().1)
        .unwrap();
    assert_eq!(sig.len(), 64);
    let s = &sig[32..];
    // n/2 for P-256 starts with 0x7fffffff 80000000; a high S is above it.
    assert!(s[0] > 0x7f, "the stored vector was chosen to have a high S");
    key("ecdsa-p256-public-spki.pem")
        .verify(manifest, &sig)
        .unwrap();
}

#[test]
fn vector_key_files_load_or_fail_as_documented() {
    for ok in [
        "rsa3072-private-pkcs1.pem",
        "rsa3072-private-pkcs8.pem",
        "ecdsa-p256-private-sec1.pem",
        "ecdsa-p256-private-pkcs8.pem",
        "ed25519-private-pkcs8.pem",
    ] {
        SigningKey::from_pem(&vector_key(ok)).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for ok in [
        "rsa3072-public-spki.pem",
        "rsa3072-public-pkcs1.pem",
        "ecdsa-p256-public-spki.pem",
        "ed25519-public-spki.pem",
    ] {
        VerifyingKey::from_pem(&vector_key(ok)).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    assert!(SigningKey::from_pem(&vector_key("rsa3072-public-spki.pem")).is_err());
    assert!(VerifyingKey::from_pem(&vector_key("ecdsa-p256-private-sec1.pem")).is_err());
}
