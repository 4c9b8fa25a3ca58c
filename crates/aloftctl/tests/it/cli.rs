//! The command line as a user meets it: exit codes, messages, output files.

use crate::{aloftctl, ok, p, text, vec_path, vectors, write_rootfs};

#[test]
fn every_vector_validates_and_signed_ones_need_the_right_key() {
    for entry in std::fs::read_dir(vectors()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "mender") {
            continue;
        }
        ok(&["artifact", "validate", &p(&path)]);
    }
    ok(&[
        "artifact",
        "validate",
        &vec_path("rootfs-signed-ecdsa.mender"),
        "-k",
        &vec_path("keys/ecdsa-p256-public-spki.pem"),
    ]);
    let wrong = aloftctl(&[
        "artifact",
        "validate",
        &vec_path("rootfs-signed-ecdsa.mender"),
        "-k",
        &vec_path("keys/rsa3072-public-spki.pem"),
    ]);
    assert_eq!(wrong.status.code(), Some(1), "{}", text(&wrong));
    assert!(
        text(&wrong).contains("rootfs-signed-ecdsa.mender"),
        "errors name the file: {}",
        text(&wrong)
    );
    let unsigned = aloftctl(&[
        "artifact",
        "validate",
        &vec_path("rootfs-gzip.mender"),
        "-k",
        &vec_path("keys/rsa3072-public-spki.pem"),
    ]);
    assert_eq!(unsigned.status.code(), Some(1));
    assert!(
        text(&unsigned).contains("not signed"),
        "{}",
        text(&unsigned)
    );
}

#[test]
fn usage_errors_exit_2_and_bad_artifacts_exit_1() {
    assert_eq!(aloftctl(&["artifact", "validate"]).status.code(), Some(2));
    assert_eq!(
        aloftctl(&["artifact", "write", "rootfs-image", "-n", "x"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(aloftctl(&["artifact", "frobnicate"]).status.code(), Some(2));
    let dir = tempfile::tempdir().unwrap();
    for f in aloft_testkit::hostile::all()
        .into_iter()
        .filter(|f| f.bytes.len() < 100_000)
    {
        let path = dir.path().join(format!("{}.mender", f.name));
        std::fs::write(&path, &f.bytes).unwrap();
        let o = aloftctl(&["artifact", "validate", &p(&path)]);
        assert_eq!(o.status.code(), Some(1), "{}: {}", f.name, text(&o));
        assert!(
            text(&o).contains(&format!("{}.mender", f.name)),
            "{}: error does not name the file: {}",
            f.name,
            text(&o)
        );
        assert!(text(&o).contains(f.expect), "{}: {}", f.name, text(&o));
    }
}

#[test]
fn read_json_describes_everything() {
    let o = ok(&[
        "artifact",
        "read",
        "--json",
        &vec_path("module-augmented-signed.mender"),
        "-k",
        &vec_path("keys/rsa3072-public-spki.pem"),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["artifact"]["name"], "augmented-1");
    assert_eq!(v["artifact"]["signature"]["state"], "verified");
    assert_eq!(
        v["artifact"]["payloads"][0]["augment"]["type"],
        "test-module-aug"
    );
    let files = v["data"]["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(files[1]["name"], "augment.bin");
    assert_eq!(files[1]["augment"], true);
    assert_eq!(
        files[0]["sha256"],
        "742af81f79c9aa068bf636fd843efc2638b2d43c62e4a1226f680405e590a5e4"
    );
}

#[test]
fn ed25519_signatures_are_named_as_an_aloft_extension() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("ed.pem");
    let o = ok(&["key", "generate", "--type", "ed25519", "-o", &p(&key)]);
    assert!(text(&o).contains("aloft extension"));
    let art = dir.path().join("ed.mender");
    ok(&[
        "artifact",
        "write",
        "module-image",
        "-T",
        "app",
        "-f",
        &vec_path("inputs/app.conf"),
        "-n",
        "ed-1",
        "-t",
        "dev",
        "-k",
        &p(&key),
        "-o",
        &p(&art),
    ]);
    let shown = text(&ok(&[
        "artifact",
        "read",
        &p(&art),
        "-k",
        &format!("{}.pub", p(&key)),
    ]));
    assert!(
        shown.contains("Ed25519 (aloft extension, not verifiable by Mender tools)"),
        "{shown}"
    );
    // The key generator refuses to overwrite, and keeps the secret private.
    assert_eq!(
        aloftctl(&["key", "generate", "--type", "ed25519", "-o", &p(&key)])
            .status
            .code(),
        Some(1)
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}

#[test]
fn cat_streams_one_file_and_sign_refuses_to_sign_twice() {
    let o = ok(&[
        "artifact",
        "cat",
        &vec_path("module-two-files.mender"),
        "file-b.bin",
    ]);
    assert_eq!(
        o.stdout,
        std::fs::read(vec_path("inputs/file-b.bin")).unwrap()
    );
    let missing = aloftctl(&[
        "artifact",
        "cat",
        &vec_path("module-two-files.mender"),
        "nope",
    ]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing).contains("file-a.txt"),
        "lists the files there are: {}",
        text(&missing)
    );

    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("a.mender");
    std::fs::copy(vec_path("rootfs-signed-rsa.mender"), &copy).unwrap();
    let again = aloftctl(&[
        "artifact",
        "sign",
        &p(&copy),
        "-k",
        &vec_path("keys/ecdsa-p256-private-sec1.pem"),
    ]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again).contains("already signed"), "{}", text(&again));
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        std::fs::read(vec_path("rootfs-signed-rsa.mender")).unwrap(),
        "a refused sign changes nothing"
    );
    ok(&[
        "artifact",
        "sign",
        &p(&copy),
        "-k",
        &vec_path("keys/ecdsa-p256-private-sec1.pem"),
        "--force",
    ]);
    ok(&[
        "artifact",
        "validate",
        &p(&copy),
        "-k",
        &vec_path("keys/ecdsa-p256-public-spki.pem"),
    ]);
}

#[test]
fn a_failed_write_leaves_no_file_behind() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bad.mender");
    let o = write_rootfs("has space", &out, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("white space"), "{}", text(&o));
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no partial or temporary file is left"
    );
}
