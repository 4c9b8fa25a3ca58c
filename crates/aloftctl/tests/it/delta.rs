//! `aloftctl delta`: a signed delta artifact from two signed releases, read by the real
//! `mender-artifact`, applied back to the exact image; and its refusals.

use std::path::Path;
use std::process::{Command, Output};

use aloft_testkit::images::noise;

use crate::{aloftctl, ok, p, text, vec_path};

/// `aloftctl delta make --from FROM --to TO -o OUT` and `extra`.
fn make(from: &Path, to: &Path, out: &Path, extra: &[&str]) -> Output {
    let (from, to, out) = (p(from), p(to), p(out));
    let mut args = vec!["delta", "make", "--from", &from, "--to", &to, "-o", &out];
    args.extend_from_slice(extra);
    aloftctl(&args)
}

/// `aloftctl delta apply --from FROM DELTA -o OUT` and `extra`.
fn apply(from: &Path, delta: &Path, out: &Path, extra: &[&str]) -> Output {
    let (from, delta, out) = (p(from), p(delta), p(out));
    let mut args = vec!["delta", "apply", "--from", &from, &delta, "-o", &out];
    args.extend_from_slice(extra);
    aloftctl(&args)
}

fn ext4(tree: &Path, out: &Path) {
    aloft_testkit::images::ext4(tree, out, 8 << 20, 1024);
}

#[test]
fn a_signed_delta_artifact_rebuilds_the_release_and_refuses_another_source() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let v1 = d.join("v1");
    aloft_testkit::images::library_tree(&v1, 20, 40_000);
    let v2 = d.join("v2");
    aloft_testkit::images::copy_tree(&v1, &v2);
    std::fs::write(v2.join("usr/lib/new.so"), noise(99, 30_000)).unwrap();
    std::fs::remove_file(v2.join("usr/lib/lib3.so")).unwrap();
    ext4(&v1, &d.join("v1.ext4"));
    ext4(&v2, &d.join("v2.ext4"));
    let key = vec_path("keys/ecdsa-p256-private-pkcs8.pem");
    let public = vec_path("keys/ecdsa-p256-public-spki.pem");
    for (name, image) in [("release-1", "v1.ext4"), ("release-2", "v2.ext4")] {
        ok(&[
            "artifact",
            "write",
            "rootfs-image",
            "-f",
            &p(&d.join(image)),
            "-n",
            name,
            "-t",
            "dev",
            "-k",
            &key,
            "-o",
            &p(&d.join(format!("{name}.mender"))),
        ]);
    }
    let delta = d.join("delta.mender");
    let (r1, r2) = (d.join("release-1.mender"), d.join("release-2.mender"));
    let signed = ["-k", key.as_str(), "--verify-key", public.as_str()];
    let o = make(&r1, &r2, &delta, &signed);
    assert!(o.status.success(), "{}", text(&o));
    let full = std::fs::metadata(&r2).unwrap().len();
    let small = std::fs::metadata(&delta).unwrap().len();
    assert!(
        small * 5 < full,
        "delta {small} bytes, full artifact {full}"
    );

    // The real mender-artifact reads it: the release's name and provides, the old image's
    // checksum as its dependency, the payload type.
    let sha = |f: &str| {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(std::fs::read(d.join(f)).unwrap()))
    };
    let read = Command::new("mender-artifact")
        .args(["read", &p(&delta)])
        .output()
        .expect("mender-artifact (scripts/test.sh installs it)");
    let shown = String::from_utf8_lossy(&read.stdout);
    assert!(
        read.status.success(),
        "{shown}{}",
        String::from_utf8_lossy(&read.stderr)
    );
    assert!(
        shown.contains("release-2") && shown.contains("aloft-delta"),
        "{shown}"
    );
    assert!(
        shown.contains(&sha("v2.ext4")),
        "provides the new checksum: {shown}"
    );
    assert!(
        shown.contains(&sha("v1.ext4")),
        "depends on the old checksum: {shown}"
    );
    let own = text(&ok(&["artifact", "read", &p(&delta), "-k", &public]));
    assert!(own.contains("verified"), "{own}");
    let shown = text(&ok(&["delta", "show", &p(&delta)]));
    assert!(
        shown.contains(&sha("v1.ext4")) && shown.contains(&sha("v2.ext4")),
        "{shown}"
    );

    // Applied to the old image, it rebuilds the new one exactly.
    let (old, new) = (d.join("v1.ext4"), d.join("v2.ext4"));
    let out = d.join("out.ext4");
    let o = apply(&old, &delta, &out, &["--verify-key", &public]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&new).unwrap());

    // Another source is refused for what it is, and leaves no output.
    let wrong = d.join("wrong.ext4");
    let o = apply(&new, &delta, &wrong, &[]);
    assert!(!o.status.success());
    assert!(text(&o).contains("source does not match"), "{}", text(&o));
    assert!(!wrong.exists());
    // Mixed inputs, and a signature for a bare delta, get a reason.
    let o = make(&r1, &new, &d.join("x"), &[]);
    assert!(text(&o).contains("both be artifacts"), "{}", text(&o));
    let o = make(&old, &new, &d.join("x"), &["-k", &key]);
    assert!(text(&o).contains("cannot be signed"), "{}", text(&o));
    assert!(!d.join("x").exists());
    // A bare delta round trips too.
    let bare = d.join("bare.aldelta");
    assert!(make(&old, &new, &bare, &[]).status.success());
    assert!(
        apply(&old, &bare, &d.join("bare.ext4"), &[])
            .status
            .success()
    );
    assert_eq!(
        std::fs::read(d.join("bare.ext4")).unwrap(),
        std::fs::read(&new).unwrap()
    );
}
