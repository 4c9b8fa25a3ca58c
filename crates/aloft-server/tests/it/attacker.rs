//! The server tested as an attacker would: slow and idle connections, invented methods,
//! oversized parts, stolen sessions, guessed passwords and floods of devices. Each attack is
//! bounded, and answered with a clear error where there is anyone to answer.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aloft_server::conn::ConnLimits;
use aloft_server::http::Settings;
use aloft_server::server::{self, Running, ServeOptions};

use serde_json::json;

use crate::common::{ADMIN, PASSWORD, SimDevice, TestApp, agent_for};

/// A server with the given connection limits (no users).
struct Limited {
    rt: tokio::runtime::Runtime,
    running: Option<Running>,
    _dir: tempfile::TempDir,
    addr: SocketAddr,
    cert: std::path::PathBuf,
}

impl Limited {
    fn start(limits: ConnLimits) -> Self {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let opts = ServeOptions {
            data_dir: dir.path().join("data"),
            listen: "127.0.0.1:0".parse().unwrap(),
            public_url: None,
            tls_cert: None,
            tls_key: None,
            database_url: None,
        };
        let running = rt
            .block_on(server::start_limited(opts, Settings::default(), limits))
            .unwrap();
        Self {
            addr: running.addr,
            cert: running.cert.clone(),
            running: Some(running),
            rt,
            _dir: dir,
        }
    }

    fn healthy(&self) -> bool {
        agent_for(&self.cert)
            .get(format!("https://localhost:{}/healthz", self.addr.port()))
            .call()
            .is_ok_and(|r| r.status() == 200)
    }
}

impl Drop for Limited {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            let _ = self.rt.block_on(r.shutdown());
        }
    }
}

/// A TLS connection to a test server, as a blocking stream.
pub(crate) fn tls_connect(
    addr: SocketAddr,
    cert: &std::path::Path,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let conn =
        rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// Whether the peer closed `s` (EOF or reset) within `secs`, reading whatever it sends.
fn closed_within(s: &mut impl std::io::Read, secs: u64) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
        if Instant::now() >= end {
            return false;
        }
    }
}

#[test]
fn slow_headers_and_idle_connections_are_closed() {
    let server = Limited::start(ConnLimits {
        max_connections: 64,
        idle_timeout: Duration::from_secs(2),
        header_read_timeout: Duration::from_secs(2),
        handshake_timeout: Duration::from_secs(2),
    });
    // Idle after the TLS handshake (a kept-alive connection nobody uses).
    let mut idle = tls_connect(server.addr, &server.cert);
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let started = Instant::now();
    assert!(closed_within(&mut idle, 8), "an idle connection is closed");
    assert!(started.elapsed() >= Duration::from_secs(1));
    // Slowloris: a header line every half second never completes a request.
    let mut slow = tls_connect(server.addr, &server.cert);
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
        .unwrap();
    slow.sock
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let started = Instant::now();
    let mut closed = false;
    for i in 0..16 {
        if slow
            .write_all(format!("X-Slow-{i}: a\r\n").as_bytes())
            .is_err()
            || closed_within(&mut slow, 0)
        {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(closed, "headers trickled for 8 s are cut off");
    assert!(started.elapsed() < Duration::from_secs(6));
    // Raw TCP that never starts TLS.
    let mut raw = TcpStream::connect(server.addr).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    assert!(closed_within(&mut raw, 8), "a silent socket is closed");
    assert!(server.healthy());
}

#[test]
fn connections_over_the_cap_are_closed_and_the_server_stays_reachable() {
    let server = Limited::start(ConnLimits {
        max_connections: 8,
        idle_timeout: Duration::from_secs(3),
        header_read_timeout: Duration::from_secs(3),
        handshake_timeout: Duration::from_secs(3),
    });
    let held: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut over = TcpStream::connect(server.addr).unwrap();
    over.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let started = Instant::now();
    assert!(
        closed_within(&mut over, 2),
        "the ninth connection is closed"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    // The held ones time out and the server answers again without a restart.
    crate::common::wait_for(10, "the server to answer again", || {
        server.healthy().then_some(())
    });
    drop(held);
}

#[test]
fn invented_methods_do_not_grow_the_metrics() {
    let app = TestApp::start();
    for i in 0..40 {
        let mut s = tls_connect(app.addr, &app.cert);
        s.write_all(
            format!("BREW{i} /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        assert!(answer.starts_with(b"HTTP/1.1 "), "answered");
    }
    let text = app.get("/metrics").expect(200).text();
    assert!(!text.contains("BREW"), "an invented method is a label");
    assert!(
        text.contains("method=\"other\""),
        "invented methods count as other"
    );
}

#[test]
fn an_oversized_description_is_refused_before_it_ends() {
    let app = TestApp::start();
    let mut s = tls_connect(app.addr, &app.cert);
    let boundary = "aloft-attack";
    let head = format!(
        "POST /api/management/v1/deployments/artifacts HTTP/1.1\r\nHost: localhost\r\n\
         Authorization: Bearer {}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n\
         Content-Length: {}\r\n\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"description\"\r\n\r\n",
        app.token,
        700u64 << 20
    );
    s.write_all(head.as_bytes()).unwrap();
    // 1 MiB of a description that would go on for 700 MiB.
    let chunk = vec![b'd'; 64 << 10];
    for _ in 0..16 {
        if s.write_all(&chunk).is_err() {
            break;
        }
    }
    let _ = s.flush();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.starts_with("HTTP/1.1 400"),
        "refused while the part is still being sent: {text:?}"
    );
}

/// Calls a management route with a bearer token.
fn with_token(app: &TestApp, method: &str, path: &str, token: &str) -> crate::common::Resp {
    app.call(
        method,
        path,
        &[("authorization", &format!("Bearer {token}"))],
        None,
    )
}

#[test]
fn a_password_change_ends_the_users_other_sessions_and_tokens() {
    let app = TestApp::start();
    let other_session = app.login(ADMIN, PASSWORD);
    let pat = app
        .post(
            "/api/management/v1/useradm/settings/tokens",
            &json!({"name": "ci", "expires_in": 3600}),
        )
        .expect(200)
        .text();
    let me = "/api/management/v1/useradm/users/me";
    with_token(&app, "GET", me, &pat).expect(200);
    app.put(
        me,
        &json!({"password": "a-new-long-password", "current_password": PASSWORD}),
    )
    .expect(204);
    with_token(&app, "GET", me, &other_session).expect(401);
    with_token(&app, "GET", me, &pat).expect(401);
    app.get(me).expect(200);
    app.login(ADMIN, "a-new-long-password");
}

/// Opens the event stream at `path_and_query`; its `data:` lines arrive on the channel, and the
/// channel closes when the stream ends.
fn listen(
    app: &TestApp,
    path_and_query: &str,
    headers: &[(&str, &str)],
) -> Result<std::sync::mpsc::Receiver<serde_json::Value>, u16> {
    use std::io::BufRead as _;
    let mut req = app.agent.get(app.url(path_and_query));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let response = req.call().unwrap();
    if response.status() != 200 {
        return Err(response.status().as_u16());
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let reader = std::io::BufReader::new(response.into_body().into_reader());
        for line in reader.lines().map_while(Result::ok) {
            if let Some(data) = line.strip_prefix("data:") {
                let _ = tx.send(serde_json::from_str(data.trim()).unwrap());
            }
        }
    });
    Ok(rx)
}

fn ticket(app: &TestApp, token: &str) -> String {
    let r = with_token(app, "POST", "/api/management/v1/events/ticket", token).expect(200);
    r.json()["ticket"].as_str().unwrap().to_owned()
}

#[test]
fn event_tickets_are_single_use_and_a_revoked_token_ends_its_stream() {
    let app = TestApp::start();
    let events = "/api/management/v1/events";
    // The long-lived token is no longer accepted in the URL.
    assert_eq!(
        listen(&app, &format!("{events}?access_token={}", app.token), &[]).err(),
        Some(401)
    );
    let session = app.login(ADMIN, PASSWORD);
    let t = ticket(&app, &session);
    // A ticket opens the stream, once, and is no management token.
    with_token(&app, "GET", "/api/management/v1/useradm/users/me", &t).expect(401);
    let rx = listen(&app, &format!("{events}?ticket={t}"), &[]).unwrap();
    assert_eq!(
        listen(&app, &format!("{events}?ticket={t}"), &[]).err(),
        Some(401),
        "a ticket is single-use"
    );
    let mut dev = SimDevice::new("02:00:00:00:a7:01");
    assert_eq!(dev.auth(&app), 401);
    let e = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(e["status"], "pending");
    // The session behind the ticket logs out: the stream ends and delivers nothing more.
    with_token(
        &app,
        "POST",
        "/api/management/v1/useradm/auth/logout",
        &session,
    )
    .expect(202);
    std::thread::sleep(Duration::from_millis(1500));
    let mut other = SimDevice::new("02:00:00:00:a7:02");
    assert_eq!(other.auth(&app), 401);
    match rx.recv_timeout(Duration::from_secs(10)) {
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {}
        got => panic!("a revoked token's stream still delivers: {got:?}"),
    }
    // A ticket of a revoked token is refused.
    let gone = app.login(ADMIN, PASSWORD);
    let t = ticket(&app, &gone);
    with_token(
        &app,
        "POST",
        "/api/management/v1/useradm/auth/logout",
        &gone,
    )
    .expect(202);
    assert_eq!(
        listen(&app, &format!("{events}?ticket={t}"), &[]).err(),
        Some(401)
    );
}

#[test]
fn a_token_in_a_cookie_is_not_a_credential() {
    let app = TestApp::start();
    let cookie = format!("JWT={}", app.token);
    let r = app.call(
        "GET",
        "/api/management/v1/deployments/artifacts",
        &[("cookie", &cookie)],
        None,
    );
    assert_eq!(r.status, 401);
    // A cross-origin form post carrying the cookie stores nothing.
    let (ctype, body) = crate::common::multipart(b"not an artifact", &[]);
    let r = app.call(
        "POST",
        "/api/management/v1/deployments/artifacts",
        &[
            ("cookie", &cookie),
            ("content-type", &ctype),
            ("origin", "https://evil.example"),
        ],
        Some(body),
    );
    assert_eq!(r.status, 401);
}

#[test]
fn password_guessing_is_throttled_with_retry_after() {
    use base64::Engine as _;
    let app = TestApp::start();
    let guess = |password: &str| {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{ADMIN}:{password}"));
        app.call(
            "POST",
            "/api/management/v1/useradm/auth/login",
            &[("authorization", &format!("Basic {basic}"))],
            None,
        )
    };
    // Ten failures at once, then one per five seconds: the bucket refills while guessing, and
    // on a loaded machine each wrong guess (a password hash) takes a while, so guess until
    // refused and allow the refills the elapsed time explains.
    let started = std::time::Instant::now();
    let mut statuses: Vec<u16> = Vec::new();
    while statuses.last() != Some(&429) && statuses.len() < 60 {
        statuses.push(guess(&format!("guess-{}", statuses.len())).status);
    }
    let refills = usize::try_from(started.elapsed().as_secs() / 5).unwrap() + 1;
    assert_eq!(&statuses[..10], &[401; 10], "{statuses:?}");
    assert_eq!(statuses.last(), Some(&429), "never refused: {statuses:?}");
    let failures = statuses.iter().filter(|s| **s == 401).count();
    assert!(
        failures <= 10 + refills,
        "{failures} failures allowed in {:?}: {statuses:?}",
        started.elapsed()
    );
    let r = guess(PASSWORD);
    assert_eq!(r.status, 429, "even the right password waits");
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=10).contains(&wait), "{wait}");
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("too many failed logins")
    );
}

/// Sends `dev`'s auth request.
fn auth_request(app: &TestApp, dev: &SimDevice) -> crate::common::Resp {
    let body = dev.auth_body();
    app.call(
        "POST",
        "/api/devices/v1/authentication/auth_requests",
        &[
            ("content-type", "application/json"),
            ("x-men-signature", &dev.signature(&body)),
        ],
        Some(body),
    )
}

fn device_count(app: &TestApp) -> u64 {
    app.get("/api/management/v2/devauth/devices/count")
        .expect(200)
        .json()["count"]
        .as_u64()
        .unwrap()
}

#[test]
fn huge_identities_and_endless_keys_are_refused_and_store_nothing() {
    let app = TestApp::start();
    let mut huge = SimDevice::new("02:00:00:00:b0:01");
    huge.identity = json!({"mac": "02:00:00:00:b0:01", "junk": "x".repeat(3_500_000)});
    let r = auth_request(&app, &huge);
    assert_eq!(r.status, 413, "{}", r.text());
    let mut big = SimDevice::new("02:00:00:00:b0:02");
    big.identity = json!({"mac": "02:00:00:00:b0:02", "junk": "x".repeat(5000)});
    let r = auth_request(&app, &big);
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("identity data larger than")
    );
    assert_eq!(device_count(&app), 0, "nothing was stored");
    // One identity with ever new keys: 16 auth sets, then a clear refusal.
    let statuses: Vec<u16> = (0..18)
        .map(|_| auth_request(&app, &SimDevice::new("02:00:00:00:b0:03")).status)
        .collect();
    assert_eq!(&statuses[..16], &[401; 16], "{statuses:?}");
    assert_eq!(&statuses[16..], &[400; 2], "{statuses:?}");
    let list = app
        .get("/api/management/v2/devauth/devices?status=pending")
        .expect(200)
        .json();
    assert_eq!(list[0]["auth_sets"].as_array().unwrap().len(), 16);
}

#[test]
fn a_flood_of_new_identities_is_throttled_with_retry_after() {
    let app = TestApp::start();
    let mut first_429 = None;
    let started = Instant::now();
    for i in 0..600u32 {
        let dev = SimDevice::new(&format!("02:00:00:01:{:02x}:{:02x}", i / 256, i % 256));
        let r = auth_request(&app, &dev);
        if r.status == 429 {
            first_429 = Some((i, r));
            break;
        }
        assert_eq!(r.status, 401, "pending: {}", r.text());
    }
    let (at, r) = first_429.expect("the flood is throttled");
    // 100 at once, then 10 a second while the flood goes on.
    let allowed = 101.0 + 10.0 * started.elapsed().as_secs_f64();
    assert!(
        at >= 100 && f64::from(at) <= allowed,
        "throttled after {at}"
    );
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(wait >= 1);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("too many new devices")
    );
    // A device already known (here with a second key) is not held up by the flood.
    let again = auth_request(&app, &SimDevice::new("02:00:00:01:00:00"));
    assert_eq!(again.status, 401, "{}", again.text());
    assert_eq!(device_count(&app), u64::from(at));
}

#[test]
fn oversized_inventory_queries_get_400() {
    let app = TestApp::start();
    let search = "/api/management/v2/inventory/filters/search";
    let filter = |i: usize| json!({"scope": "inventory", "attribute": format!("a{i}"), "type": "$eq", "value": "x"});
    let many: Vec<_> = (0..2000).map(filter).collect();
    let values: Vec<String> = (0..40_000).map(|i| format!("v{i}")).collect();
    let ids: Vec<String> = (0..40_000).map(|i| format!("id-{i}")).collect();
    for (what, body) in [
        ("many filters", json!({"filters": many})),
        (
            "a long $in",
            json!({"filters": [{"scope": "inventory", "attribute": "a", "type": "$in", "value": values}]}),
        ),
        ("many device ids", json!({"device_ids": ids})),
    ] {
        let r = app.post(search, &body);
        assert_eq!(r.status, 400, "{what}: {}", r.text());
    }
    let query: Vec<String> = (0..2000).map(|i| format!("a{i}=x")).collect();
    let r = app.get(&format!(
        "/api/management/v1/inventory/devices?{}",
        query.join("&")
    ));
    assert_eq!(r.status, 400, "many v1 filters: {}", r.text());
    // A reasonable query still works.
    app.post(search, &json!({"filters": [filter(1)]}))
        .expect(200);
}

#[test]
fn a_deployment_naming_too_many_devices_gets_400() {
    let app = TestApp::start();
    let work = tempfile::tempdir().unwrap();
    let file = crate::common::mender_single_file(
        work.path(),
        "r1",
        "test-device",
        std::path::Path::new("/tmp"),
        b"x",
    );
    app.upload_ok(&file);
    let devices: Vec<String> = (0..10_001).map(|i| format!("no-such-device-{i}")).collect();
    let r = app.post(
        "/api/management/v1/deployments/deployments",
        &json!({"name": "flood", "artifact_name": "r1", "devices": devices}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("at most 10000 devices")
    );
    assert_eq!(
        app.get("/api/management/v1/deployments/deployments")
            .expect(200)
            .json()
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

#[test]
fn user_emails_with_control_characters_are_refused() {
    let app = TestApp::start();
    for email in ["nul\u{0}@example.com", "esc\u{1b}@example.com"] {
        let r = app.post(
            "/api/management/v1/useradm/users",
            &json!({"email": email, "password": "long-enough-password"}),
        );
        assert_eq!(r.status, 400, "{email:?}: {}", r.text());
    }
}
