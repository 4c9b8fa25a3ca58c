//! Hostile artifacts, each named after its attack, with the text its rejection must contain.
//!
//! `all()` builds them in memory; `cargo run -p aloft-testkit --example write-hostile DIR` writes
//! them as files (fuzz corpus seeds, manual checks with other tools).

use std::io::Write as _;

use crate::craft::{self, Artifact, Entry, Kind};

/// One hostile artifact.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// Name of the attack (also the file name, with `.mender`).
    pub name: String,
    /// The artifact bytes.
    pub bytes: Vec<u8>,
    /// Text the error must contain.
    pub expect: &'static str,
}

fn fixture(name: &str, bytes: Vec<u8>, expect: &'static str) -> Fixture {
    Fixture {
        name: name.to_owned(),
        bytes,
        expect,
    }
}

fn base() -> Artifact {
    let mut a = Artifact::module(&[
        ("file-a.txt", b"hello, device\n"),
        ("file-b.bin", &[7u8; 3000]),
    ]);
    a.gzip = false;
    a
}

fn with_members(f: impl FnOnce(&mut Vec<(String, Vec<u8>)>)) -> Vec<u8> {
    let mut members = base().members();
    f(&mut members);
    craft::outer(&members)
}

fn flip(data: &mut [u8], at: usize) {
    data[at] ^= 0x01;
}

/// Every hostile fixture.
pub fn all() -> Vec<Fixture> {
    let mut out = Vec::new();
    out.extend(truncations());

    // A flipped bit in each covered part.
    out.push(fixture(
        "flipped-bit-version",
        with_members(|m| flip(&mut m[0].1, 3)),
        "checksum mismatch for version",
    ));
    out.push(fixture(
        "flipped-bit-manifest",
        with_members(|m| {
            let at = m[1].1.len() - 73; // second hex digit of the last line (version)
            flip(&mut m[1].1, at);
        }),
        "checksum mismatch for version",
    ));
    out.push(fixture(
        "flipped-bit-header",
        with_members(|m| flip(&mut m[2].1, 600)),
        "checksum mismatch for header.tar",
    ));
    out.push(fixture(
        "flipped-bit-payload",
        with_members(|m| flip(&mut m[3].1, 512 + 3)),
        "checksum mismatch for data/0000/file-a.txt",
    ));
    out.push(fixture(
        "flipped-bit-compressed-payload",
        {
            let mut a = base();
            a.gzip = true;
            let mut members = a.members();
            let len = members[3].1.len();
            flip(&mut members[3].1, len / 2);
            craft::outer(&members)
        },
        "data/0000",
    ));

    // Manifest and payload disagree.
    out.push(fixture(
        "checksum-missing-for-file",
        {
            let mut a = base();
            a.listed = Some(vec![("file-a.txt".into(), b"hello, device\n".to_vec())]);
            a.build()
        },
        "checksum missing from the manifest for data/0000/file-b.bin",
    ));
    out.push(fixture(
        "extra-file-not-in-manifest",
        {
            let mut a = base();
            a.listed = Some(
                a.data
                    .iter()
                    .map(|e| (e.name.clone(), e.data.clone()))
                    .collect(),
            );
            a.data.push(Entry::file("extra.bin", b"smuggled".to_vec()));
            a.build()
        },
        "checksum missing from the manifest for data/0000/extra.bin",
    ));
    out.push(fixture(
        "manifest-lists-absent-file",
        {
            let mut a = base();
            let mut listed: Vec<_> = a
                .data
                .iter()
                .map(|e| (e.name.clone(), e.data.clone()))
                .collect();
            listed.push(("ghost.bin".into(), b"boo".to_vec()));
            a.listed = Some(listed);
            a.build()
        },
        "missing from the artifact: data/0000/ghost.bin",
    ));

    // Member order.
    out.push(fixture(
        "wrong-order-manifest-first",
        with_members(|m| m.swap(0, 1)),
        "expected member \"version\"",
    ));
    out.push(fixture(
        "wrong-order-data-before-header",
        with_members(|m| m.swap(2, 3)),
        "expected header.tar",
    ));
    out.push(fixture(
        "duplicate-data-member",
        with_members(|m| {
            let data = m[3].clone();
            m.push(data);
        }),
        "appears twice",
    ));
    out.push(fixture(
        "data-for-unknown-payload",
        with_members(|m| m.push(("data/0001.tar".into(), craft::tar(&[])))),
        "has no payload",
    ));
    out.push(fixture(
        "unknown-member-after-header",
        with_members(|m| m.insert(3, ("evil.sh".into(), b"#!/bin/sh\n".to_vec()))),
        "unexpected member \"evil.sh\"",
    ));

    // Entries that could escape a directory or are not plain files.
    for (name, entry, expect) in [
        (
            "path-traversal-dotdot",
            Entry::file("../evil", b"x".to_vec()),
            "unsafe entry \"../evil\"",
        ),
        (
            "path-traversal-absolute",
            Entry::file("/etc/passwd", b"x".to_vec()),
            "unsafe entry \"/etc/passwd\"",
        ),
        (
            "path-traversal-subdir",
            Entry::file("sub/file", b"x".to_vec()),
            "unsafe entry \"sub/file\"",
        ),
        (
            "symlink-entry",
            Entry::special("link", Kind::Symlink("/etc/shadow".into())),
            "symbolic link entries are not allowed",
        ),
        (
            "hardlink-entry",
            Entry::special("link", Kind::HardLink("/etc/shadow".into())),
            "hard link entries are not allowed",
        ),
        (
            "device-entry",
            Entry::special("dev", Kind::CharDevice),
            "character device entries are not allowed",
        ),
        (
            "fifo-entry",
            Entry::special("pipe", Kind::Fifo),
            "fifo entries are not allowed",
        ),
        (
            "directory-entry",
            Entry::special("dir", Kind::Dir),
            "directory entries are not allowed",
        ),
    ] {
        let mut a = base();
        a.listed = Some(
            a.data
                .iter()
                .map(|e| (e.name.clone(), e.data.clone()))
                .collect(),
        );
        a.data.insert(0, entry);
        out.push(fixture(name, a.build(), expect));
    }
    out.push(fixture(
        "path-traversal-script",
        {
            let mut a = base();
            a.header_entries.insert(
                0,
                Entry::file(
                    "scripts/../../etc/cron.d/x",
                    b"* * * * * root sh\n".to_vec(),
                ),
            );
            a.build()
        },
        "unsafe entry \"scripts/../../etc/cron.d/x\"",
    ));
    out.push(fixture(
        "symlink-outer-member",
        {
            let members = base().members();
            let mut entries: Vec<Entry> = members
                .iter()
                .map(|(n, d)| Entry::file(n, d.clone()))
                .collect();
            entries.insert(
                2,
                Entry::special("manifest-augment", Kind::Symlink("/etc/passwd".into())),
            );
            craft::tar(&entries)
        },
        "symbolic link members are not allowed",
    ));

    // Resource exhaustion.
    out.push(fixture("header-bomb", header_bomb(), "too large"));
    out.push(fixture(
        "huge-json",
        {
            let mut a = base();
            let name = "n".repeat(2 * 1024 * 1024);
            a.header_info = format!(
                r#"{{"payloads":[{{"type":"test-module"}}],"artifact_provides":{{"artifact_name":"{name}"}},"artifact_depends":{{"device_type":["qemux86-64"]}}}}"#
            )
            .into_bytes();
            a.build()
        },
        "header-info is too large",
    ));
    out.push(fixture(
        "huge-manifest",
        with_members(|m| m[1].1 = vec![b'a'; 2 * 1024 * 1024]),
        "manifest is too large",
    ));

    // Versions.
    for (name, version, expect) in [
        (
            "unknown-format-version",
            r#"{"format":"mender","version":4}"#,
            "unsupported format version 4",
        ),
        (
            "format-version-1",
            r#"{"format":"mender","version":1}"#,
            "no longer supported",
        ),
        (
            "unknown-version-field",
            r#"{"format":"mender","version":3,"extra":1}"#,
            "unknown field",
        ),
    ] {
        let mut a = base();
        a.version = version.as_bytes().to_vec();
        out.push(fixture(name, a.build(), expect));
    }

    // Garbage.
    out.push(fixture("empty-file", Vec::new(), "truncated"));
    out.push(fixture(
        "not-a-tar",
        b"this is not an artifact\n".repeat(40),
        "corrupt tar header",
    ));
    out.push(fixture(
        "trailing-garbage",
        {
            let mut bytes = base().build();
            bytes.extend_from_slice(b"appended junk");
            bytes
        },
        "after the end-of-archive marker",
    ));
    out
}

/// The artifact cut at each member boundary and inside the data.
fn truncations() -> Vec<Fixture> {
    let members = base().members();
    let full = craft::outer(&members);
    let mut cuts = Vec::new();
    let mut offset = 0usize;
    for (name, data) in &members {
        cuts.push((
            format!("truncated-before-{}", name.replace('/', "-")),
            offset,
        ));
        cuts.push((
            format!("truncated-after-{}-header", name.replace('/', "-")),
            offset + 512,
        ));
        offset += 512 + data.len().div_ceil(512) * 512;
    }
    let data_start = offset - members[3].1.len().div_ceil(512) * 512;
    cuts.push(("truncated-inside-payload".into(), data_start + 1000));
    cuts.push(("truncated-before-end-marker".into(), offset));
    cuts.push(("truncated-inside-end-marker".into(), offset + 512));
    cuts.into_iter()
        .map(|(name, at)| Fixture {
            name,
            bytes: full[..at].to_vec(),
            expect: "truncated",
        })
        .collect()
}

/// A header that decompresses to 1 GiB (a header-info, then two million directory entries).
fn header_bomb() -> Vec<u8> {
    let mut a = base();
    let header_info = craft::tar(&[Entry::file("header-info", a.header_info.clone())]);
    let dir = craft::tar(&[Entry::special("d/", Kind::Dir)]);
    let dir_block = &dir[..512];
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&header_info[..header_info.len() - 1024])
        .expect("in memory");
    let chunk = dir_block.repeat(2048);
    for _ in 0..1024 {
        gz.write_all(&chunk).expect("in memory");
    }
    gz.write_all(&[0u8; 1024]).expect("in memory");
    let header = gz.finish().expect("in memory");
    a.gzip = true;
    let mut members = a.members();
    members[1].1 = a.manifest_for(&header);
    members[2].1 = header;
    craft::outer(&members)
}
