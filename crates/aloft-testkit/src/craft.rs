//! A raw artifact crafter: builds members from parts with correct checksums, and lets a test
//! change any part (names, order, entry kinds, bytes) to make a broken artifact on purpose.

use std::io::Write as _;

/// What a crafted tar entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link to the target.
    Symlink(String),
    /// A hard link to the target.
    HardLink(String),
    /// A character device.
    CharDevice,
    /// A named pipe.
    Fifo,
}

/// One crafted tar entry. The name is written raw, so `../x` or `/etc/x` are possible.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Entry name, written as is.
    pub name: String,
    /// Content (regular files only).
    pub data: Vec<u8>,
    /// Entry kind.
    pub kind: Kind,
}

impl Entry {
    /// A regular file.
    pub fn file(name: &str, data: impl Into<Vec<u8>>) -> Self {
        Self {
            name: name.to_owned(),
            data: data.into(),
            kind: Kind::File,
        }
    }

    /// An entry of another kind.
    pub fn special(name: &str, kind: Kind) -> Self {
        Self {
            name: name.to_owned(),
            data: Vec::new(),
            kind,
        }
    }
}

/// A tar of `entries` (USTAR, via the `tar` crate, names written raw).
pub fn tar(entries: &[Entry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_ustar();
        let bytes = h.as_mut_bytes();
        let name = e.name.as_bytes();
        assert!(
            name.len() <= 100,
            "crafted names must fit the ustar name field"
        );
        bytes[..name.len()].copy_from_slice(name);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        let (flag, link) = match &e.kind {
            Kind::File => (tar::EntryType::Regular, None),
            Kind::Dir => (tar::EntryType::Directory, None),
            Kind::Symlink(t) => (tar::EntryType::Symlink, Some(t)),
            Kind::HardLink(t) => (tar::EntryType::Link, Some(t)),
            Kind::CharDevice => (tar::EntryType::Char, None),
            Kind::Fifo => (tar::EntryType::Fifo, None),
        };
        h.set_entry_type(flag);
        if let Some(t) = link {
            h.set_link_name(t).expect("a short link name");
        }
        h.set_size(e.data.len() as u64);
        h.set_cksum();
        builder.append(&h, e.data.as_slice()).expect("in memory");
    }
    builder.into_inner().expect("in memory")
}

/// gzip of `data`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("in memory");
    e.finish().expect("in memory")
}

/// An outer tar of (name, content) members, in the given order.
pub fn outer(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let entries: Vec<Entry> = members
        .iter()
        .map(|(n, d)| Entry::file(n, d.clone()))
        .collect();
    tar(&entries)
}

/// The parts of a v3 module artifact; [`Artifact::members`] computes every checksum.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// `version` content.
    pub version: Vec<u8>,
    /// `header-info` content.
    pub header_info: Vec<u8>,
    /// Header entries after `header-info` (scripts, type-info, meta-data, anything).
    pub header_entries: Vec<Entry>,
    /// Entries of `data/0000.tar`.
    pub data: Vec<Entry>,
    /// Payload files listed in the manifest (default: every regular file of `data`).
    pub listed: Option<Vec<(String, Vec<u8>)>>,
    /// gzip header and data (`.tar.gz`) or not (`.tar`).
    pub gzip: bool,
}

impl Artifact {
    /// A valid module artifact of type `test-module` with the given payload files.
    pub fn module(files: &[(&str, &[u8])]) -> Self {
        Self {
            version: br#"{"format":"mender","version":3}"#.to_vec(),
            header_info: br#"{"payloads":[{"type":"test-module"}],"artifact_provides":{"artifact_name":"crafted-1"},"artifact_depends":{"device_type":["qemux86-64"]}}"#.to_vec(),
            header_entries: vec![Entry::file(
                "headers/0000/type-info",
                r#"{"type":"test-module","artifact_provides":{"rootfs-image.test-module.version":"crafted-1"}}"#,
            )],
            data: files.iter().map(|(n, d)| Entry::file(n, *d)).collect(),
            listed: None,
            gzip: true,
        }
    }

    fn suffix(&self) -> &'static str {
        if self.gzip { ".gz" } else { "" }
    }

    fn maybe_gzip(&self, data: Vec<u8>) -> Vec<u8> {
        if self.gzip { gzip(&data) } else { data }
    }

    /// The (compressed) header member content.
    pub fn header(&self) -> Vec<u8> {
        let mut entries = vec![Entry::file("header-info", self.header_info.clone())];
        entries.extend(self.header_entries.iter().cloned());
        self.maybe_gzip(tar(&entries))
    }

    /// The (compressed) data member content.
    pub fn data_member(&self) -> Vec<u8> {
        self.maybe_gzip(tar(&self.data))
    }

    /// The manifest for the given header content.
    pub fn manifest_for(&self, header: &[u8]) -> Vec<u8> {
        let listed = self.listed.clone().unwrap_or_else(|| {
            self.data
                .iter()
                .filter(|e| e.kind == Kind::File)
                .map(|e| (e.name.clone(), e.data.clone()))
                .collect()
        });
        let mut lines: Vec<String> = listed
            .iter()
            .map(|(name, data)| format!("{}  data/0000/{name}\n", crate::sha256_hex(data)))
            .collect();
        lines.push(format!(
            "{}  header.tar{}\n",
            crate::sha256_hex(header),
            self.suffix()
        ));
        lines.push(format!("{}  version\n", crate::sha256_hex(&self.version)));
        lines.concat().into_bytes()
    }

    /// The outer members, in canonical order, with consistent checksums.
    pub fn members(&self) -> Vec<(String, Vec<u8>)> {
        let header = self.header();
        vec![
            ("version".into(), self.version.clone()),
            ("manifest".into(), self.manifest_for(&header)),
            (format!("header.tar{}", self.suffix()), header),
            (
                format!("data/0000.tar{}", self.suffix()),
                self.data_member(),
            ),
        ]
    }

    /// The whole artifact.
    pub fn build(&self) -> Vec<u8> {
        outer(&self.members())
    }
}
