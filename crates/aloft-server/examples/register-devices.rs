//! Benchmark helper: registers N devices with Ed25519 keys through the API (preauthorize, then a
//! signed auth request as a device sends it), reports the rate, and writes the first K device
//! tokens to a file for the poll load generator.
//!
//! `register-devices URL CA_CERT ADMIN_TOKEN N THREADS TOKENS_OUT K`
#![expect(clippy::cast_precision_loss, reason = "rates for display")]
#![expect(clippy::print_stdout, reason = "a benchmark tool reports on stdout")]

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use base64::Engine as _;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

fn agent(ca: &str) -> ureq::Agent {
    let pem = std::fs::read(ca).expect("CA certificate");
    let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
        .filter_map(|i| match i {
            Ok(PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    ureq::Agent::config_builder()
        .tls_config(
            TlsConfig::builder()
                .root_certs(RootCerts::Specific(Arc::new(certs)))
                .build(),
        )
        .http_status_as_error(false)
        .build()
        .into()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    assert!(
        args.len() == 8,
        "usage: register-devices URL CA_CERT ADMIN_TOKEN N THREADS TOKENS_OUT K"
    );
    let (url, ca, admin) = (args[1].clone(), args[2].clone(), args[3].clone());
    let n: usize = args[4].parse().expect("N");
    let threads: usize = args[5].parse().expect("THREADS");
    let k: usize = args[7].parse().expect("K");
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tokens: Vec<(usize, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (url, ca, admin, next) = (&url, &ca, &admin, next.clone());
                s.spawn(move || {
                    let agent = agent(ca);
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            break;
                        }
                        let key =
                            aloft_artifact::SigningKey::generate(aloft_artifact::KeyType::Ed25519)
                                .unwrap();
                        let pem = key.verifying_key().to_pem().unwrap();
                        let mac = format!(
                            "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                            i >> 32 & 0xff,
                            i >> 24 & 0xff,
                            i >> 16 & 0xff,
                            i >> 8 & 0xff,
                            i & 0xff
                        );
                        let identity = serde_json::json!({"mac": mac});
                        let pre = serde_json::json!({"identity_data": identity, "pubkey": pem});
                        let r = agent
                            .post(format!("{url}/api/management/v2/devauth/devices"))
                            .header("authorization", format!("Bearer {admin}"))
                            .send_json(&pre)
                            .expect("preauthorize");
                        assert_eq!(r.status(), 201, "preauthorize device {i}");
                        let mut body = serde_json::to_vec(&serde_json::json!({
                            "id_data": identity.to_string(), "tenant_token": "", "pubkey": pem
                        }))
                        .unwrap();
                        body.push(b'\n');
                        let sig = base64::engine::general_purpose::STANDARD.encode(key.sign(&body));
                        let r = agent
                            .post(format!("{url}/api/devices/v1/authentication/auth_requests"))
                            .header("content-type", "application/json")
                            .header("x-men-signature", sig)
                            .send(&body[..])
                            .expect("auth request");
                        assert_eq!(r.status(), 200, "auth request of device {i}");
                        let token = r.into_body().read_to_string().unwrap();
                        if i < k {
                            mine.push((i, token));
                        }
                        if i > 0 && i % 10_000 == 0 {
                            eprintln!(
                                "  {i} devices, {:.0}/s",
                                i as f64 / start.elapsed().as_secs_f64()
                            );
                        }
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let secs = start.elapsed().as_secs_f64();
    println!(
        "registered {n} devices in {secs:.1} s: {:.0} devices/s (2 requests each)",
        n as f64 / secs
    );
    let mut out = std::fs::File::create(&args[6]).unwrap();
    for (_, t) in tokens {
        writeln!(out, "{t}").unwrap();
    }
}
