//! Encodes an image pair with options from the environment and prints the make-up (tuning).
#![allow(clippy::print_stdout, missing_docs)]

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let source = std::fs::read(&args[1]).unwrap();
    let target = std::fs::read(&args[2]).unwrap();
    let filter = match std::env::var("FILTER").as_deref() {
        Ok("none") => aloft_delta::Filter::None,
        Ok("x86") => aloft_delta::Filter::X86,
        _ => aloft_delta::Filter::Auto,
    };
    let defaults = aloft_delta::EncodeOptions::default();
    let opts = aloft_delta::EncodeOptions {
        chunk_size: u32::try_from(env("CHUNK", u64::from(defaults.chunk_size))).unwrap(),
        preset: u32::try_from(env("PRESET", 9)).unwrap(),
        filter,
        ..defaults
    };
    let start = std::time::Instant::now();
    let mut out = Vec::new();
    let stats = aloft_delta::encode(
        &source,
        source.len() as u64,
        &mut &target[..],
        target.len() as u64,
        &opts,
        &mut out,
        &mut |_, _, _| {},
    )
    .unwrap();
    println!(
        "{:?} {:?} in {:.1}s",
        opts,
        stats,
        start.elapsed().as_secs_f64()
    );
}
