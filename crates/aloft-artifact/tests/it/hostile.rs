//! Hostile input: every named fixture is refused with a clear error, without a panic, and the
//! consumer never receives a byte of a file whose checksum failed without being told.

use aloft_artifact::{ArtifactReader, ReadOptions};
use aloft_testkit::hostile;

use crate::{chain, read_all};

#[test]
fn every_hostile_fixture_is_refused_with_its_reason() {
    let fixtures = hostile::all();
    assert!(fixtures.len() > 40, "{} fixtures", fixtures.len());
    let mut failures = Vec::new();
    for f in fixtures {
        match read_all(&f.bytes, &[]) {
            Ok(_) => failures.push(format!("{}: accepted", f.name)),
            Err(e) => {
                let text = chain(&e);
                if !text.contains(f.expect) {
                    failures.push(format!(
                        "{}: error {text:?} does not mention {:?}",
                        f.name, f.expect
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn consumer_sees_a_read_error_at_the_end_of_a_corrupt_file() {
    let fixture = hostile::all()
        .into_iter()
        .find(|f| f.name == "flipped-bit-payload")
        .unwrap();
    let reader = ArtifactReader::open(fixture.bytes.as_slice(), &ReadOptions::default()).unwrap();
    let mut consumer_error = None;
    let err = reader
        .read_payloads(|file| {
            let mut buf = Vec::new();
            if let Err(e) = std::io::Read::read_to_end(file, &mut buf) {
                consumer_error = Some(e.kind());
                return Err(e.into());
            }
            Ok(())
        })
        .unwrap_err();
    assert_eq!(consumer_error, Some(std::io::ErrorKind::InvalidData));
    assert!(
        chain(&err).contains("checksum mismatch for data/0000/file-a.txt"),
        "{}",
        chain(&err)
    );
}
