//! Artifact files in a real S3 server (`SeaweedFS` from `aloft_testkit::s3`, on loopback):
//! uploads land in the bucket and nothing is kept of a refused one, devices (the aloft daemon
//! and the real Mender client) download through presigned URLs straight from S3 and resume a
//! cut download with `Range`, S3 being down answers 503 and recovers, and deleting an artifact
//! while its file is uploaded again never leaves an artifact without its file (both backends).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aloft_server::config::{BlobLocation, Cleanup, ServerConfig};
use aloft_server::http::Settings;
use aloft_testkit::s3::{ACCESS_KEY, BUCKET, S3Server, SECRET_KEY};

use crate::common::{S3_PREFIX as PREFIX, s3_location};
use futures::TryStreamExt as _;
use serde_json::json;

use crate::common::{FakeServer, TestApp, mender_single_file, wait_for};
use crate::daemon::{SimDaemon, accept, final_status, rootfs_artifact};

fn start_on_s3(s3: &S3Server, public_endpoint: Option<&str>, settings: &Settings) -> TestApp {
    TestApp::start_config(|data| {
        let mut cfg =
            ServerConfig::for_data_dir(data, "127.0.0.1:0".parse().unwrap(), settings.clone());
        cfg.blobs = s3_location(s3, public_endpoint.map(str::to_owned));
        cfg
    })
}

/// A client of the test bucket of its own (not the server's).
fn bucket(s3: &S3Server) -> object_store::aws::AmazonS3 {
    object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(BUCKET)
        .with_region("us-east-1")
        .with_endpoint(&s3.endpoint)
        .with_allow_http(true)
        .with_access_key_id(ACCESS_KEY)
        .with_secret_access_key(SECRET_KEY)
        .build()
        .unwrap()
}

/// The keys in the bucket.
fn bucket_keys(app: &TestApp, s3: &S3Server) -> Vec<String> {
    let store = bucket(s3);
    let mut keys: Vec<String> = app.rt.block_on(async {
        use object_store::ObjectStore as _;
        store
            .list(None)
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap()
    });
    keys.sort();
    keys
}

/// A GET of any URL (S3's own too), with an optional `Range`.
fn get(app: &TestApp, url: &str, range: Option<&str>) -> (u16, Vec<u8>) {
    let headers: Vec<(&str, &str)> = range.map(|r| ("range", r)).into_iter().collect();
    let r = app.call("GET", url, &headers, None);
    (r.status, r.body)
}

fn link(app: &TestApp, id: &str) -> String {
    app.get(&format!(
        "/api/management/v1/deployments/artifacts/{id}/download"
    ))
    .expect(200)
    .json()["uri"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn uploads_land_in_s3_and_links_are_presigned_ranged_and_expire() {
    let work = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(work.path());
    let app = start_on_s3(
        &s3,
        None,
        &Settings {
            download_link_secs: 4,
            ..Settings::default()
        },
    );
    let file = rootfs_artifact(work.path(), "s3-one", "board", 1 << 20);
    let bytes = std::fs::read(&file).unwrap();
    let id = app.upload_ok(&file);
    assert_eq!(
        bucket_keys(&app, &s3),
        vec![format!("{PREFIX}/artifacts/{id}")]
    );

    // A refused upload (cut short) keeps nothing.
    let r = app.upload_bytes(&bytes[..bytes.len() / 2], &[]);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        bucket_keys(&app, &s3).len(),
        1,
        "nothing of the refused upload"
    );

    // The link is S3's own, signed for its endpoint.
    let uri = link(&app, &id);
    assert!(
        uri.starts_with(&format!(
            "{}/{BUCKET}/{PREFIX}/artifacts/{id}?",
            s3.endpoint
        )),
        "{uri}"
    );
    assert!(uri.contains("X-Amz-Signature="), "{uri}");
    let r = app.call("GET", &uri, &[], None).expect(200);
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.mender-artifact")
    );
    assert!(r.body == bytes, "the whole file from S3");
    let (status, body) = get(&app, &uri, Some("bytes=1000-1999"));
    assert_eq!(status, 206);
    assert_eq!(body, &bytes[1000..2000]);
    // Tampered with: refused.
    let mut forged = uri.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == '0' { '1' } else { '0' });
    assert_eq!(get(&app, &forged, None).0, 403);
    let other = uri.replace(&id, &uuid_like());
    assert_eq!(get(&app, &other, None).0, 403, "a signature is for one key");
    // Expired: refused.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(get(&app, &uri, None).0, 403, "an expired link");

    // Deleting the artifact deletes its file.
    app.delete(&format!("/api/management/v1/deployments/artifacts/{id}"))
        .expect(204);
    assert!(bucket_keys(&app, &s3).is_empty());
}

fn uuid_like() -> String {
    "00000000-0000-4000-8000-000000000000".into()
}

#[test]
fn s3_down_answers_503_keeps_nothing_and_recovers() {
    let work = tempfile::tempdir().unwrap();
    let mut s3 = S3Server::start(work.path());
    let app = start_on_s3(&s3, None, &Settings::default());
    let file = rootfs_artifact(work.path(), "s3-down", "board", 512 << 10);
    s3.stop();
    let started = std::time::Instant::now();
    let r = app.upload(&file, &[]);
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("artifact storage (s3) unavailable"),
        "{}",
        r.text()
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "answered in {:?}",
        started.elapsed()
    );
    let list = app
        .get("/api/management/v1/deployments/artifacts")
        .expect(200)
        .json();
    assert_eq!(list, json!([]), "nothing half-stored");

    s3.restart();
    assert!(
        bucket_keys(&app, &s3).is_empty(),
        "nothing half-stored in S3"
    );
    // Without a restart of the server, uploads work again once S3 takes writes (its volume
    // server may join a moment after the gateway answers).
    let r = wait_for(30, "an upload to S3 after its restart", || {
        let r = app.upload(&file, &[]);
        assert!(r.status == 201 || r.status == 503, "{}", r.text());
        (r.status == 201).then_some(r)
    });
    let id = r.created_id();
    let (status, body) = get(&app, &link(&app, &id), None);
    assert_eq!(status, 200);
    assert!(body == std::fs::read(&file).unwrap());
}

/// Deletes an artifact while the same file is uploaded again, `rounds` times; afterwards every
/// listed artifact can be downloaded whole.
fn delete_during_reupload(app: &TestApp, file: &Path, rounds: usize) {
    let bytes = std::fs::read(file).unwrap();
    for round in 0..rounds {
        let id = app.upload_ok(file);
        std::thread::scope(|s| {
            let del = s.spawn(|| {
                app.delete(&format!("/api/management/v1/deployments/artifacts/{id}"))
                    .status
            });
            let up = s.spawn(|| app.upload(file, &[]).status);
            assert_eq!(del.join().unwrap(), 204);
            let up = up.join().unwrap();
            assert!(up == 201 || up == 409, "round {round}: upload {up}");
        });
        let list = app
            .get("/api/management/v1/deployments/artifacts")
            .expect(200)
            .json();
        for a in list.as_array().unwrap() {
            let id = a["id"].as_str().unwrap();
            let uri = link(app, id);
            let (status, body) = get(app, &uri, None);
            assert_eq!(
                status, 200,
                "round {round}: listed artifact {id} has no file"
            );
            assert!(body == bytes, "round {round}: {id} serves other bytes");
            app.delete(&format!("/api/management/v1/deployments/artifacts/{id}"))
                .expect(204);
        }
    }
}

#[test]
fn deleting_while_reuploading_never_lists_an_artifact_without_its_file() {
    let work = tempfile::tempdir().unwrap();
    let file = rootfs_artifact(work.path(), "race", "board", 256 << 10);
    let local = TestApp::start();
    delete_during_reupload(&local, &file, 15);
    let s3 = S3Server::start(work.path());
    let app = start_on_s3(&s3, None, &Settings::default());
    delete_during_reupload(&app, &file, 8);
    assert!(bucket_keys(&app, &s3).is_empty(), "no file left behind");
}

/// A TCP pass-through that counts the bytes it sends back, notes the head of each request
/// (lower case), and cuts the answer of its first connection after `cut_first` bytes.
struct Tap {
    addr: SocketAddr,
    sent: Arc<AtomicU64>,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Tap {
    fn start(upstream: SocketAddr, cut_first: Option<u64>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let sent = Arc::new(AtomicU64::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let conns = Arc::new(AtomicUsize::new(0));
        let (s, h) = (sent.clone(), heads.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let cut = (conns.fetch_add(1, Ordering::SeqCst) == 0)
                    .then_some(cut_first)
                    .flatten();
                let (s, h) = (s.clone(), h.clone());
                std::thread::spawn(move || pipe(client, server, cut, &s, &h));
            }
        });
        Self { addr, sent, heads }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }

    /// The `Range` of each GET.
    fn ranges(&self) -> Vec<Option<String>> {
        self.heads()
            .iter()
            .filter(|h| h.starts_with("get "))
            .map(|h| {
                h.lines()
                    .find_map(|l| l.strip_prefix("range:").map(|v| v.trim().to_owned()))
            })
            .collect()
    }
}

fn pipe(
    mut client: TcpStream,
    mut server: TcpStream,
    cut: Option<u64>,
    sent: &AtomicU64,
    heads: &Mutex<Vec<String>>,
) {
    let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut buf = vec![0u8; 64 << 10];
            while let Ok(n) = c2.read(&mut buf) {
                if n == 0 || s2.write_all(&buf[..n]).is_err() {
                    break;
                }
                let text = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
                for head in text.split("\r\n\r\n") {
                    if ["get ", "put ", "post ", "delete ", "head "]
                        .iter()
                        .any(|m| head.starts_with(m))
                    {
                        heads.lock().unwrap().push(head.to_owned());
                    }
                }
            }
            let _ = s2.shutdown(std::net::Shutdown::Write);
        });
        let mut buf = vec![0u8; 64 << 10];
        let mut total = 0u64;
        while let Ok(n) = server.read(&mut buf) {
            if n == 0 {
                break;
            }
            let n = cut.map_or(n, |c| n.min(usize::try_from(c - total).unwrap_or(n)));
            if client.write_all(&buf[..n]).is_err() {
                break;
            }
            total += n as u64;
            sent.fetch_add(n as u64, Ordering::SeqCst);
            if cut.is_some_and(|c| total >= c) {
                break;
            }
        }
        let _ = client.shutdown(std::net::Shutdown::Both);
        let _ = server.shutdown(std::net::Shutdown::Both);
    });
}

#[test]
fn an_upload_goes_to_s3_in_parts_and_is_never_copied_there() {
    let work = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(work.path());
    // The server reaches S3 through a tap that notes its requests.
    let tap = Tap::start(format!("127.0.0.1:{}", s3.port()).parse().unwrap(), None);
    let app = TestApp::start_config(|data| {
        let mut cfg =
            ServerConfig::for_data_dir(data, "127.0.0.1:0".parse().unwrap(), Settings::default());
        let BlobLocation::S3(mut s) = s3_location(&s3, None) else {
            unreachable!()
        };
        s.endpoint = Some(format!("http://{}", tap.addr));
        cfg.blobs = BlobLocation::S3(s);
        cfg
    });
    let file = rootfs_artifact(work.path(), "parts", "board", 20 << 20);
    let id = app.upload_ok(&file);
    let heads = tap.heads();
    let first_lines: Vec<&str> = heads.iter().filter_map(|h| h.lines().next()).collect();
    let key = format!("/{BUCKET}/{PREFIX}/artifacts/{id}");
    let parts = first_lines
        .iter()
        .filter(|l| l.starts_with(&format!("put {key}?partnumber=")))
        .count();
    assert!(parts >= 3, "20 MiB in 8 MiB parts: {first_lines:#?}");
    assert!(
        first_lines
            .iter()
            .any(|l| l.starts_with(&format!("post {key}?uploads"))),
        "{first_lines:#?}"
    );
    assert!(
        !heads.iter().any(|h| h.contains("x-amz-copy-source")),
        "a server-side copy: {first_lines:#?}"
    );
    let (status, body) = get(&app, &link(&app, &id), None);
    assert_eq!(status, 200);
    assert!(body == std::fs::read(&file).unwrap());
}

#[test]
fn a_daemon_installs_from_s3_and_resumes_a_cut_download_with_range() {
    let work = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(work.path());
    let size = 4 << 20;
    // Devices reach S3 through a tap that cuts the first download at 40 %.
    let s3_tap = Tap::start(
        format!("127.0.0.1:{}", s3.port()).parse().unwrap(),
        Some(size * 2 / 5),
    );
    let app = start_on_s3(
        &s3,
        Some(&format!("http://{}", s3_tap.addr)),
        &Settings::default(),
    );
    // And the server through a tap that counts what the server sends them.
    let server_tap = Tap::start(app.addr, None);
    let mut dev = SimDaemon::create_for(
        &FakeServer {
            addr: server_tap.addr,
            cert: app.cert.clone(),
        },
        &work.path().join("dev"),
        "sim-board",
        "download_stall_timeout_seconds = 2\nallow_plain_http = true",
    );
    dev.start();
    let device = accept(&app, &dev.mac());
    let file = rootfs_artifact(work.path(), "s3-rootfs", "sim-board", 4 << 20);
    let len = std::fs::metadata(&file).unwrap().len();
    app.upload_ok(&file);
    let d = app.deploy("from-s3", "s3-rootfs", &[&device]);
    assert_eq!(
        final_status(&app, &d, &device, 180),
        "success",
        "{}",
        dev.log()
    );
    assert_eq!(dev.status()["artifact_name"], "s3-rootfs");

    let ranges = s3_tap.ranges();
    let from_s3 = s3_tap.sent.load(Ordering::SeqCst);
    let from_server = server_tap.sent.load(Ordering::SeqCst);
    eprintln!(
        "artifact {len} bytes; from S3 {from_s3} bytes in {ranges:?}; from the server {from_server} bytes"
    );
    assert!(ranges.len() >= 2, "cut once, then resumed: {ranges:?}");
    assert!(
        ranges[1..]
            .iter()
            .flatten()
            .any(|r| r.starts_with("bytes=") && !r.starts_with("bytes=0-")),
        "the resume asked S3 for the rest: {ranges:?}"
    );
    assert!(from_s3 >= len, "the artifact came from S3");
    #[allow(clippy::cast_precision_loss)]
    let ratio = from_s3 as f64 / len as f64;
    assert!(ratio < 1.2, "resumed, not restarted: {ratio:.2}x");
    assert!(
        from_server < len / 8,
        "no artifact bytes through the server: it sent {from_server} bytes"
    );
    assert!(
        dev.log().contains("download interrupted; resuming"),
        "{}",
        dev.log()
    );
}

#[test]
fn the_real_mender_client_installs_from_a_presigned_s3_url() {
    let work = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(work.path());
    let s3_tap = Tap::start(format!("127.0.0.1:{}", s3.port()).parse().unwrap(), None);
    let app = start_on_s3(
        &s3,
        Some(&format!("http://{}", s3_tap.addr)),
        &Settings::default(),
    );
    let root = work.path().join("device");
    let dev = crate::mender_client::start_mender(&app, &root);
    let device = accept(&app, "02:00:00:00:00:01");
    let dest = work.path().join("installed");
    std::fs::create_dir_all(&dest).unwrap();
    let content = vec![b'm'; 300 << 10];
    let file = mender_single_file(
        work.path(),
        "mender-from-s3",
        "test-device",
        &dest,
        &content,
    );
    let len = std::fs::metadata(&file).unwrap().len();
    app.upload_ok(&file);
    let d = app.deploy("mender-s3", "mender-from-s3", &[&device]);
    let done = crate::mender_client::wait_finished(&app, &dev, &d);
    assert_eq!(done["statistics"]["status"]["success"], 1, "{}", dev.log());
    assert!(std::fs::read(dest.join("payload.txt")).unwrap() == content);
    let from_s3 = s3_tap.sent.load(Ordering::SeqCst);
    assert!(
        from_s3 >= len,
        "the Mender client fetched {from_s3} of {len} bytes from S3"
    );
}

#[test]
fn orphans_in_s3_are_deleted_by_the_background_job_and_artifacts_kept() {
    let work = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(work.path());
    let app = TestApp::start_config(|data| {
        let mut cfg =
            ServerConfig::for_data_dir(data, "127.0.0.1:0".parse().unwrap(), Settings::default());
        cfg.blobs = s3_location(&s3, None);
        cfg.cleanup = Cleanup {
            interval_secs: 1,
            orphan_age_secs: 2,
        };
        cfg
    });
    let file = rootfs_artifact(work.path(), "kept", "board", 64 << 10);
    let id = app.upload_ok(&file);
    // What a crash between the file and its row leaves, and an upload of an older layout.
    app.rt.block_on(async {
        use object_store::ObjectStore as _;
        let store = bucket(&s3);
        for key in [
            format!("{PREFIX}/artifacts/0b8d5c2e-8a53-4d6f-9c1e-7a0d1f3b2c4d"),
            format!("{PREFIX}/uploads/5f0c2a9e-1d2b-4c3a-8e7f-6a5b4c3d2e1f"),
        ] {
            store
                .put(&key.as_str().into(), b"orphan".to_vec().into())
                .await
                .unwrap();
        }
    });
    assert_eq!(bucket_keys(&app, &s3).len(), 3);
    let want = vec![format!("{PREFIX}/artifacts/{id}")];
    wait_for(30, "the cleanup", || {
        (bucket_keys(&app, &s3) == want).then_some(())
    });
    let (status, _) = get(&app, &link(&app, &id), None);
    assert_eq!(status, 200, "the artifact's own file is kept");
}
