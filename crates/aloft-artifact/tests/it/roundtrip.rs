//! Write → read returns the same metadata and payload bytes, for every codec and payload kind.

use std::collections::BTreeMap;
use std::io::Read as _;

use aloft_artifact::{
    ArtifactReader, ArtifactWriter, Compression, KeyType, PayloadSource, PayloadType, ReadOptions,
    SignatureState, SigningKey, StateScript,
};
use proptest::prelude::*;

use crate::chain;

fn read_files(
    bytes: &[u8],
    options: &ReadOptions,
) -> (aloft_artifact::ArtifactInfo, Vec<(String, Vec<u8>)>) {
    let reader = ArtifactReader::open(bytes, options).unwrap_or_else(|e| panic!("{}", chain(&e)));
    let info = reader.info().clone();
    let mut files = Vec::new();
    reader
        .read_payloads(|f| {
            let mut data = Vec::new();
            f.read_to_end(&mut data)?;
            assert_eq!(data.len() as u64, f.size());
            files.push((f.name().to_owned(), data));
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{}", chain(&e)));
    (info, files)
}

fn write(w: ArtifactWriter) -> Vec<u8> {
    let mut out = Vec::new();
    w.write(&mut out)
        .unwrap_or_else(|e| panic!("{}", chain(&e)));
    out
}

#[test]
fn rootfs_gets_mender_default_provides_and_clears() {
    let image = vec![0x5au8; 100_000];
    let mut w = ArtifactWriter::new(
        "release-1",
        vec!["qemux86-64".into()],
        PayloadType::RootfsImage,
    );
    w.files
        .push(PayloadSource::from_bytes("rootfs.ext4", image.clone()));
    let bytes = write(w);
    let (info, files) = read_files(&bytes, &ReadOptions::default());
    let ti = &info.payloads[0].type_info;
    assert_eq!(
        ti.provides["rootfs-image.checksum"],
        aloft_testkit::sha256_hex(&image)
    );
    assert_eq!(ti.provides["rootfs-image.version"], "release-1");
    assert_eq!(
        ti.clears.as_deref().unwrap(),
        ["artifact_group", "rootfs_image_checksum", "rootfs-image.*"]
    );
    assert_eq!(files, vec![("rootfs.ext4".to_owned(), image)]);
}

#[test]
fn same_input_gives_identical_bytes() {
    let make = || {
        let mut w = ArtifactWriter::new("r", vec!["d".into()], PayloadType::Module("m".into()));
        w.files
            .push(PayloadSource::from_bytes("a", b"abc".to_vec()));
        write(w)
    };
    assert_eq!(make(), make());
}

#[test]
fn every_signing_key_type_round_trips() {
    for kind in [KeyType::Rsa, KeyType::Ecdsa, KeyType::Ed25519] {
        let key = SigningKey::generate(kind).unwrap();
        let public = key.verifying_key();
        let mut w = ArtifactWriter::new(
            "signed-1",
            vec!["dev".into()],
            PayloadType::Module("app".into()),
        );
        w.files
            .push(PayloadSource::from_bytes("app.bin", vec![1, 2, 3]));
        w.signing_key = Some(key);
        let bytes = write(w);
        let options = ReadOptions {
            trusted_keys: vec![public.clone()],
            ..ReadOptions::default()
        };
        let (info, _) = read_files(&bytes, &options);
        assert_eq!(
            info.signature,
            SignatureState::Verified {
                algorithm: public.algorithm(),
                key: public.fingerprint()
            }
        );
    }
}

#[test]
fn signing_later_equals_signing_at_write_time() {
    let key = SigningKey::generate(KeyType::Ecdsa).unwrap();
    let mut w = ArtifactWriter::new(
        "later-1",
        vec!["dev".into()],
        PayloadType::Module("app".into()),
    );
    w.files
        .push(PayloadSource::from_bytes("app.bin", vec![9; 10_000]));
    let unsigned = write(w);
    let mut signed = Vec::new();
    aloft_artifact::sign_artifact(
        unsigned.as_slice(),
        &mut signed,
        &key,
        aloft_artifact::SignMode::RefuseSigned,
    )
    .unwrap();
    let options = ReadOptions {
        trusted_keys: vec![key.verifying_key()],
        ..ReadOptions::default()
    };
    let (info, files) = read_files(&signed, &options);
    assert!(matches!(info.signature, SignatureState::Verified { .. }));
    assert_eq!(files[0].1, vec![9; 10_000]);
    // A second signature needs the explicit replace mode.
    let err = aloft_artifact::sign_artifact(
        signed.as_slice(),
        Vec::new(),
        &key,
        aloft_artifact::SignMode::RefuseSigned,
    )
    .unwrap_err();
    assert!(err.to_string().contains("already signed"));
    let other = SigningKey::generate(KeyType::Ed25519).unwrap();
    let mut resigned = Vec::new();
    aloft_artifact::sign_artifact(
        signed.as_slice(),
        &mut resigned,
        &other,
        aloft_artifact::SignMode::ReplaceSignature,
    )
    .unwrap();
    let options = ReadOptions {
        trusted_keys: vec![other.verifying_key()],
        ..ReadOptions::default()
    };
    read_files(&resigned, &options);
}

type Mutation = Box<dyn Fn(&mut ArtifactWriter)>;

#[test]
fn writer_refuses_what_the_format_forbids() {
    let cases: Vec<(&str, Mutation)> = vec![
        ("white space", Box::new(|w| w.name = "a b".into())),
        ("device type", Box::new(|w| w.device_types.clear())),
        (
            "not allowed",
            Box::new(|w| w.files.push(PayloadSource::from_bytes("..", vec![]))),
        ),
        (
            "contains",
            Box::new(|w| w.files.push(PayloadSource::from_bytes("a b", vec![]))),
        ),
        (
            "given twice",
            Box::new(|w| w.files.push(PayloadSource::from_bytes("f", vec![]))),
        ),
        (
            "its own option",
            Box::new(|w| {
                w.provides.insert("artifact_name".into(), "x".into());
            }),
        ),
        (
            "state script name",
            Box::new(|w| {
                w.scripts.push(StateScript {
                    name: "Download_Enter_00".into(),
                    content: vec![],
                    sha256: [0; 32],
                });
            }),
        ),
        (
            "values must be",
            Box::new(|w| {
                w.meta_data = Some(
                    serde_json::json!({"a": {"b": 1}})
                        .as_object()
                        .unwrap()
                        .clone(),
                );
            }),
        ),
        (
            "at most 90",
            Box::new(|w| {
                w.files
                    .push(PayloadSource::from_bytes(&"x".repeat(91), vec![]));
            }),
        ),
    ];
    for (expect, mutate) in cases {
        let mut w =
            ArtifactWriter::new("ok-1", vec!["dev".into()], PayloadType::Module("m".into()));
        w.files.push(PayloadSource::from_bytes("f", vec![1]));
        mutate(&mut w);
        let err = w.write(Vec::new()).unwrap_err();
        assert!(chain(&err).contains(expect), "{expect}: {}", chain(&err));
    }
}

#[test]
fn a_source_shorter_than_announced_is_an_error_not_a_bad_artifact() {
    let mut w = ArtifactWriter::new("short-1", vec!["dev".into()], PayloadType::RootfsImage);
    w.files.push(PayloadSource {
        name: "img".into(),
        size: 1000,
        reader: Box::new(std::io::Cursor::new(vec![0u8; 10])),
    });
    let mut out = Vec::new();
    let err = w.write(&mut out).unwrap_err();
    assert!(err.to_string().contains("ended 990 bytes early"), "{err}");
    assert!(out.is_empty(), "nothing is written on failure");
}

fn name_strategy() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.,-]{1,90}".prop_filter("not . or ..", |s| s != "." && s != "..")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn module_artifacts_round_trip(
        name in "[A-Za-z0-9._-]{1,40}",
        files in proptest::collection::btree_map(name_strategy(), proptest::collection::vec(any::<u8>(), 0..5000), 0..5),
        provides in proptest::collection::btree_map("[a-z][a-z0-9._-]{0,20}", "[ -~]{0,30}", 0..4),
        codec in prop::sample::select(Compression::ALL.to_vec()),
        script in proptest::option::of(Just("ArtifactInstall_Enter_05_check".to_owned())),
    ) {
        let provides: BTreeMap<String, String> =
            provides.into_iter().filter(|(k, _)| k != "artifact_name" && k != "artifact_group").collect();
        let mut w = ArtifactWriter::new(&name, vec!["dev-a".into(), "dev-b".into()], PayloadType::Module("mod".into()));
        for (n, d) in &files {
            w.files.push(PayloadSource::from_bytes(n, d.clone()));
        }
        w.provides = provides.clone();
        w.compression = codec;
        if let Some(s) = &script {
            w.scripts.push(StateScript { name: s.clone(), content: b"#!/bin/sh\nexit 0\n".to_vec(), sha256: [0; 32] });
        }
        let bytes = write(w);
        let (info, got) = read_files(&bytes, &ReadOptions::default());
        prop_assert_eq!(&info.name, &name);
        prop_assert_eq!(&info.device_types, &vec!["dev-a".to_owned(), "dev-b".to_owned()]);
        prop_assert_eq!(info.header_compression, codec);
        for (k, v) in &provides {
            prop_assert_eq!(&info.payloads[0].type_info.provides[k], v);
        }
        prop_assert_eq!(info.scripts.len(), usize::from(script.is_some()));
        let want: Vec<(String, Vec<u8>)> = files.into_iter().collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn rootfs_round_trips_at_any_size(size in 0usize..300_000, codec in prop::sample::select(Compression::ALL.to_vec())) {
        let image: Vec<u8> = (0..size).map(|i| u8::try_from(i * 7 % 251).unwrap()).collect();
        let mut w = ArtifactWriter::new("img-1", vec!["dev".into()], PayloadType::RootfsImage);
        w.files.push(PayloadSource::from_bytes("rootfs.img", image.clone()));
        w.compression = codec;
        let bytes = write(w);
        let (_, got) = read_files(&bytes, &ReadOptions::default());
        prop_assert_eq!(got, vec![("rootfs.img".to_owned(), image)]);
    }
}
