//! What aloftctl writes, mender-artifact 3.9 validates and reads the same way; what mender-artifact
//! signs with keys aloftctl made, aloftctl verifies, and the reverse.

use std::path::Path;
use std::process::Command;

use crate::{ok, p, text, vec_path, write_rootfs};

fn mender_artifact(args: &[&str]) -> String {
    let out = Command::new("mender-artifact").args(args).output().unwrap_or_else(|e| {
        panic!("mender-artifact is needed for this test (the README's test command installs it): {e}")
    });
    text(&out)
}

/// `mender-artifact validate` exits 0 on some failures: judge by its words.
fn assert_mender_validates(artifact: &Path, key: Option<&str>) {
    let mut args = vec!["validate"];
    if let Some(k) = key {
        args.extend(["-k", k]);
    }
    let a = p(artifact);
    args.push(&a);
    let out = mender_artifact(&args);
    assert!(
        out.contains("validated successfully"),
        "mender-artifact {args:?}: {out}"
    );
}

struct Case {
    name: &'static str,
    args: Vec<String>,
    key: Option<String>,
    expect_in_read: Vec<String>,
}

fn cases(dir: &Path) -> Vec<Case> {
    let rootfs = vec_path("inputs/rootfs-v1.ext4");
    let v1 = "f296c09da272bb2ac337651a159a35aa6257762a092d0cdada8dd38024a7eb87";
    let mut cases = Vec::new();
    for codec in ["gzip", "xz", "none"] {
        cases.push(Case {
            name: "rootfs",
            args: [
                "write",
                "rootfs-image",
                "-f",
                &rootfs,
                "-n",
                &format!("release-{codec}"),
                "-t",
                "qemux86-64",
                "-t",
                "raspberrypi4",
                "--compression",
                codec,
                "-p",
                "custom.provide:yes",
                "-g",
                "stable",
            ]
            .map(String::from)
            .to_vec(),
            key: None,
            expect_in_read: vec![
                format!("Name: release-{codec}"),
                "Type:   rootfs-image".into(),
                "Compatible devices: '[qemux86-64 raspberrypi4]'".into(),
                format!("rootfs-image.checksum: {v1}"),
                format!("rootfs-image.version: release-{codec}"),
                "custom.provide: yes".into(),
                "Provides group: stable".into(),
            ],
        });
    }
    let meta = dir.join("meta.json");
    std::fs::write(&meta, r#"{"restart": ["app", "web"], "config_version": 7}"#).unwrap();
    cases.push(Case {
        name: "module-several-files",
        args: [
            "write",
            "module-image",
            "-T",
            "test-module",
            "-f",
            &vec_path("inputs/file-a.txt"),
            "-f",
            &vec_path("inputs/file-b.bin"),
            "-f",
            &vec_path("inputs/app.conf"),
            "-m",
            &p(&meta),
            "-n",
            "module-1",
            "-t",
            "qemux86-64",
            "-d",
            "base.depend:1",
        ]
        .map(String::from)
        .to_vec(),
        key: None,
        expect_in_read: vec![
            "Name: module-1".into(),
            "Type:   test-module".into(),
            "rootfs-image.test-module.version: module-1".into(),
            "base.depend: 1".into(),
            "name:     file-a.txt".into(),
            "name:     file-b.bin".into(),
            "name:     app.conf".into(),
            "config_version".into(),
        ],
    });
    cases.push(Case {
        name: "bootstrap",
        args: [
            "write",
            "bootstrap-artifact",
            "-n",
            "bootstrap-1",
            "-t",
            "qemux86-64",
            "-p",
            &format!("rootfs-image.checksum:{v1}"),
            "-p",
            "rootfs-image.version:release-1",
            "--clears-provides",
            "rootfs-image.*",
        ]
        .map(String::from)
        .to_vec(),
        key: None,
        expect_in_read: vec![
            "Name: bootstrap-1".into(),
            format!("rootfs-image.checksum: {v1}"),
            "Type:   Empty type".into(),
        ],
    });
    let scripts = [
        "ArtifactInstall_Enter_00",
        "ArtifactCommit_Enter_50_check",
        "ArtifactFailure_Enter_00_cleanup",
    ];
    let mut args: Vec<String> = [
        "write",
        "rootfs-image",
        "-f",
        &rootfs,
        "-n",
        "scripted-1",
        "-t",
        "qemux86-64",
    ]
    .map(String::from)
    .to_vec();
    for s in scripts {
        args.extend(["-s".to_owned(), vec_path(&format!("scripts/{s}"))]);
    }
    cases.push(Case {
        name: "scripts",
        args,
        key: None,
        expect_in_read: scripts.iter().map(|s| (*s).to_owned()).collect(),
    });
    for (kind, private, public) in [
        (
            "rsa",
            "keys/rsa3072-private-pkcs1.pem",
            "keys/rsa3072-public-spki.pem",
        ),
        (
            "ecdsa",
            "keys/ecdsa-p256-private-sec1.pem",
            "keys/ecdsa-p256-public-spki.pem",
        ),
    ] {
        cases.push(Case {
            name: if kind == "rsa" {
                "signed-rsa"
            } else {
                "signed-ecdsa"
            },
            args: [
                "write",
                "rootfs-image",
                "-f",
                &rootfs,
                "-n",
                &format!("signed-{kind}"),
                "-t",
                "qemux86-64",
                "-k",
                &vec_path(private),
            ]
            .map(String::from)
            .to_vec(),
            key: Some(vec_path(public)),
            expect_in_read: vec![
                format!("Name: signed-{kind}"),
                "Signature: signed and verified correctly".into(),
            ],
        });
    }
    cases
}

#[test]
fn mender_artifact_validates_and_reads_what_aloftctl_writes() {
    let dir = tempfile::tempdir().unwrap();
    for (i, case) in cases(dir.path()).into_iter().enumerate() {
        let out = dir.path().join(format!("{i}-{}.mender", case.name));
        let mut args: Vec<String> = vec!["artifact".into()];
        args.extend(case.args.clone());
        args.extend(["-o".into(), p(&out)]);
        ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_mender_validates(&out, case.key.as_deref());
        let mut read = vec!["read", "--no-progress"];
        if let Some(k) = &case.key {
            read.extend(["-k", k]);
        }
        let o = p(&out);
        read.push(&o);
        let shown = mender_artifact(&read);
        for want in &case.expect_in_read {
            assert!(
                shown.contains(want.as_str()),
                "{}: mender-artifact read lacks {want:?}:\n{shown}",
                case.name
            );
        }
        // And our own reader agrees.
        let mut ours = vec!["artifact", "validate", &o];
        if let Some(k) = &case.key {
            ours.extend(["-k", k]);
        }
        ok(&ours);
    }
}

#[test]
fn keys_made_by_aloftctl_work_with_mender_artifact_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = vec_path("inputs/rootfs-v1.ext4");
    for kind in ["rsa", "ecdsa"] {
        let key = dir.path().join(format!("{kind}.pem"));
        ok(&["key", "generate", "--type", kind, "-o", &p(&key)]);
        let public = format!("{}.pub", p(&key));
        // mender-artifact signs with our private key; we verify with our public key.
        let by_mender = dir.path().join(format!("{kind}-by-mender.mender"));
        let out = mender_artifact(&[
            "write",
            "rootfs-image",
            "--no-progress",
            "-f",
            &rootfs,
            "-n",
            "m-1",
            "-t",
            "dev",
            "-k",
            &p(&key),
            "-o",
            &p(&by_mender),
        ]);
        assert!(
            by_mender.exists(),
            "mender-artifact could not sign with our {kind} key: {out}"
        );
        ok(&["artifact", "validate", &p(&by_mender), "-k", &public]);
        // We sign; mender-artifact verifies with our public key.
        let by_us = dir.path().join(format!("{kind}-by-us.mender"));
        let written = write_rootfs("a-1", &by_us, &["-k", &p(&key)]);
        assert!(written.status.success(), "{}", text(&written));
        assert_mender_validates(&by_us, Some(&public));
    }
}

#[test]
fn signing_a_mender_artifact_later_satisfies_mender_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let signed = dir.path().join("signed.mender");
    ok(&[
        "artifact",
        "sign",
        &vec_path("module-two-files.mender"),
        "-k",
        &vec_path("keys/ecdsa-p256-private-sec1.pem"),
        "-o",
        &p(&signed),
    ]);
    assert_mender_validates(&signed, Some(&vec_path("keys/ecdsa-p256-public-spki.pem")));
    let shown = mender_artifact(&["read", "--no-progress", &p(&signed)]);
    assert!(shown.contains("Name: module-1"), "{shown}");
}

#[test]
fn zstd_is_written_only_on_request_and_read_by_us() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("z.mender");
    let written = write_rootfs("z-1", &out, &["--compression", "zstd"]);
    assert!(written.status.success(), "{}", text(&written));
    let shown = String::from_utf8(ok(&["artifact", "read", &p(&out)]).stdout).unwrap();
    assert!(shown.contains("Data compression: zstd"), "{shown}");
    // mender-artifact 3.9 cannot read zstd: that is why it is never the default.
    let theirs = mender_artifact(&["validate", &p(&out)]);
    assert!(!theirs.contains("validated successfully"), "{theirs}");
}
