//! Benchmark helper: runs the test S3 server (`SeaweedFS`, see `aloft_testkit::s3`) in `DIR`
//! until its standard input closes, after printing `ENDPOINT BUCKET ACCESS_KEY SECRET_KEY`.
//!
//! `s3-server DIR`
#![expect(clippy::print_stdout, reason = "a benchmark tool reports on stdout")]

use std::io::Read as _;

use aloft_testkit::s3::{ACCESS_KEY, BUCKET, S3Server};

fn main() {
    let dir = std::env::args().nth(1).expect("usage: s3-server DIR");
    let server = S3Server::start(std::path::Path::new(&dir));
    println!(
        "{} {BUCKET} {ACCESS_KEY} {SECRET_KEY}",
        server.endpoint,
        SECRET_KEY = aloft_testkit::s3::SECRET_KEY
    );
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(server);
}
