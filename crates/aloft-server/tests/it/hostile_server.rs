//! aloft's daemon against a server that lies: garbage, slow answers, forged tokens and
//! deployment instructions, a tampered artifact. The daemon keeps running, says what is wrong,
//! and installs nothing.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use futures::StreamExt as _;
use serde_json::json;

use crate::common::wait_for;
use crate::daemon::{SimDaemon, bin, rootfs_artifact};

struct Liar {
    auths: AtomicUsize,
    nexts: AtomicUsize,
    base: String,
    statuses: Mutex<Vec<(String, String)>>,
    logs: Mutex<Vec<String>>,
    good: Vec<u8>,
    tampered: Vec<u8>,
}

async fn auth(State(s): State<Arc<Liar>>) -> Response {
    match s.auths.fetch_add(1, Ordering::SeqCst) {
        0 => (
            StatusCode::INTERNAL_SERVER_ERROR,
            vec![0xffu8, 0, 0xfe, b'\n'],
        )
            .into_response(),
        1 => (StatusCode::OK, "eyJh.eyJz\r\nX-Injected: yes").into_response(),
        2 => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            (StatusCode::OK, "slow.but.valid").into_response()
        }
        _ => (StatusCode::OK, "forged.jwt.token").into_response(),
    }
}

async fn inventory() -> Response {
    (StatusCode::OK, "\u{0}garbage").into_response()
}

fn instructions(base: &str, id: &str, name: &str, uri: &str) -> serde_json::Value {
    json!({"id": id, "artifact": {"id": "x", "artifact_name": name,
        "source": {"uri": uri.replace("BASE", base), "expire": "2099-01-01T00:00:00Z"},
        "device_types_compatible": ["sim-board"]}})
}

async fn next(State(s): State<Arc<Liar>>) -> Response {
    let b = &s.base;
    let body = match s.nexts.fetch_add(1, Ordering::SeqCst) {
        0 => "{\"id\":".to_owned(),
        1 => "x".repeat(3 << 20),
        2 => instructions(b, "../../etc/passwd", "release-2", "BASE/artifact?v=good").to_string(),
        3 => instructions(b, "d-file", "release-2", "file:///etc/shadow").to_string(),
        4 => instructions(b, "d-tampered", "release-2", "BASE/artifact?v=tampered").to_string(),
        5 => instructions(b, "d-renamed", "not-what-it-is", "BASE/artifact?v=good").to_string(),
        6 => instructions(b, "d-wrongtype", "release-2", "BASE/artifact?v=good")
            .to_string()
            .replace("sim-board", "toaster"),
        7 => instructions(b, "d-downgrade", "release-2", "BASE/redirect").to_string(),
        8 => instructions(b, "d-plain", "release-2", "http://127.0.0.1:9/artifact").to_string(),
        9 => instructions(b, "d-huge", "release-2", "BASE/huge").to_string(),
        10 => instructions(b, "d-endless", "release-2", "BASE/endless").to_string(),
        11 => instructions(b, "d-trickle", "release-2", "BASE/trickle").to_string(),
        _ => return StatusCode::NO_CONTENT.into_response(),
    };
    (StatusCode::OK, body).into_response()
}

async fn status(
    State(s): State<Arc<Liar>>,
    UrlPath(id): UrlPath<String>,
    body: String,
) -> StatusCode {
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    s.statuses
        .lock()
        .unwrap()
        .push((id, v["status"].as_str().unwrap_or("?").to_owned()));
    StatusCode::NO_CONTENT
}

async fn log(State(s): State<Arc<Liar>>, body: String) -> StatusCode {
    s.logs.lock().unwrap().push(body);
    StatusCode::NO_CONTENT
}

async fn artifact(
    State(s): State<Arc<Liar>>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let bytes = if q.get("v").map(String::as_str) == Some("tampered") {
        s.tampered.clone()
    } else {
        s.good.clone()
    };
    Response::new(Body::from(bytes))
}

/// A redirect from https to plain http (where an unsigned artifact would wait).
async fn redirect() -> Response {
    (
        StatusCode::FOUND,
        [("location", "http://127.0.0.1:9/artifact?v=unsigned")],
    )
        .into_response()
}

static ZEROS: &[u8] = &[0; 16384];

/// Announces 1 GiB for a device with 16 MiB slots.
async fn huge() -> Response {
    let chunks = futures::stream::repeat_with(|| {
        Ok::<_, std::io::Error>(axum::body::Bytes::from_static(ZEROS))
    })
    .take(1 << 16);
    (
        [("content-length", (1u64 << 30).to_string())],
        Body::from_stream(chunks),
    )
        .into_response()
}

/// Sends without end and without a length.
async fn endless() -> Response {
    let chunks = futures::stream::repeat_with(|| {
        Ok::<_, std::io::Error>(axum::body::Bytes::from_static(ZEROS))
    });
    Body::from_stream(chunks).into_response()
}

/// One byte every 300 ms: never a stall, never done.
async fn trickle() -> Response {
    let chunks = futures::stream::unfold((), |()| async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Some((
            Ok::<_, std::io::Error>(axum::body::Bytes::from_static(b"x")),
            (),
        ))
    });
    Body::from_stream(chunks).into_response()
}

#[test]
fn daemon_survives_a_lying_server_and_installs_nothing() {
    let work = tempfile::tempdir().unwrap();
    let tls = aloft_server::tls::ensure(work.path(), None, None, None).unwrap();
    let good = std::fs::read(rootfs_artifact(
        work.path(),
        "release-2",
        "sim-board",
        1 << 20,
    ))
    .unwrap();
    let mut tampered = good.clone();
    // A byte in the middle of the payload: the checksum cannot match.
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x55;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let liar = Arc::new(Liar {
        auths: AtomicUsize::new(0),
        nexts: AtomicUsize::new(0),
        base: format!("https://127.0.0.1:{}", addr.port()),
        statuses: Mutex::new(Vec::new()),
        logs: Mutex::new(Vec::new()),
        good,
        tampered,
    });
    let app = Router::new()
        .route("/api/devices/v1/authentication/auth_requests", post(auth))
        .route(
            "/api/devices/v1/inventory/device/attributes",
            put(inventory).patch(inventory),
        )
        .route(
            "/api/devices/v2/deployments/device/deployments/next",
            post(next),
        )
        .route(
            "/api/devices/v1/deployments/device/deployments/{id}/status",
            put(status),
        )
        .route(
            "/api/devices/v1/deployments/device/deployments/{id}/log",
            put(log),
        )
        .route("/artifact", get(artifact))
        .route("/redirect", get(redirect))
        .route("/huge", get(huge))
        .route("/endless", get(endless))
        .route("/trickle", get(trickle))
        .with_state(liar.clone());
    let config = rt.block_on(async {
        axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(server_config(
            &tls.cert, &tls.key,
        )))
    });
    rt.spawn(async move {
        axum_server::from_tcp_rustls(listener, config)
            .serve(app.into_make_service())
            .await
            .unwrap();
    });

    let fake = crate::common::FakeServer {
        addr,
        cert: tls.cert.clone(),
    };
    let mut dev = SimDaemon::create_for(
        &fake,
        &work.path().join("dev"),
        "sim-board",
        "download_stall_timeout_seconds = 2\nretry_poll_count = 2",
    );
    dev.start();
    wait_for(120, "every lie to be answered", || {
        let statuses = liar.statuses.lock().unwrap().clone();
        let finals = [
            "d-file",
            "d-tampered",
            "d-renamed",
            "d-wrongtype",
            "d-downgrade",
            "d-plain",
            "d-huge",
            "d-endless",
            "d-trickle",
        ]
        .iter()
        .all(|id| statuses.iter().any(|(i, s)| i == id && s == "failure"));
        (finals && liar.nexts.load(Ordering::SeqCst) > 12).then_some(())
    });
    assert!(dev.running(), "the daemon survived: {}", dev.log());
    let statuses = liar.statuses.lock().unwrap().clone();
    assert!(
        statuses
            .iter()
            .all(|(_, s)| !["success", "rebooting"].contains(&s.as_str())),
        "{statuses:?}"
    );
    assert!(
        !statuses.iter().any(|(id, _)| id.contains("..")),
        "a forged id never reaches a URL: {statuses:?}"
    );
    let status = dev.status();
    assert_eq!(status["artifact_name"], "factory-1", "{status}");
    assert_eq!(status["booted_slot"], "a");
    assert!(status["pending"].is_null(), "{status}");
    let log = dev.log();
    for needle in [
        "characters a JWT cannot have",
        "refused the deployment instructions",
        "http(s)",
        "announced artifact \"not-what-it-is\"",
        "toaster",
        "redirected to plain http",
        "a plain http:// link",
        "too large for this device: 1073741824 bytes",
        "too large for this device",
        "slower than 1024 bytes/s",
    ] {
        assert!(log.contains(needle), "the log says {needle:?}:\n{log}");
    }
    let logs = liar.logs.lock().unwrap().clone();
    assert!(
        logs.iter()
            .any(|l| l.contains("checksum") || l.contains("invalid")),
        "the tampered artifact's log names the problem: {logs:?}"
    );
    assert!(
        !dev.dir.join("data/daemon/artifact.part").exists(),
        "the spool of a refused download is gone"
    );
    // The stored bootloader state never pointed at slot B.
    let out = std::process::Command::new(bin("aloft"))
        .arg("--config")
        .arg(dev.dir.join("aloft.toml"))
        .arg("show-artifact")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "factory-1");
}

fn server_config(cert: &std::path::Path, key: &std::path::Path) -> rustls::ServerConfig {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap()
}
