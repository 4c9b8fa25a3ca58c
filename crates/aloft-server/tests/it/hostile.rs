//! Hostile input: each gets a clear 4xx, and nothing half-written remains.

use aloft_server::auth::{AUD_DEVICE, AUD_MANAGEMENT, Claims, ISSUER, Keys};
use serde_json::json;
use std::io::{Read as _, Write as _};

use crate::common::{SimDevice, TestApp, multipart};

fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

#[test]
fn bad_bodies_get_clear_errors() {
    let app = TestApp::start();
    let path = "/api/management/v1/deployments/deployments";
    let auth = format!("Bearer {}", app.token);
    let send = |ctype: &str, body: &[u8]| {
        app.call(
            "POST",
            path,
            &[("authorization", &auth), ("content-type", ctype)],
            Some(body.to_vec()),
        )
    };
    let r = send("application/json", b"{\"name\": ");
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("malformed JSON"),
        "{}",
        r.text()
    );
    assert!(r.json()["request_id"].is_string());
    assert_eq!(send("application/json", b"[1,2,3]").status, 400);
    assert_eq!(send("text/plain", b"{}").status, 415);
    let r = app
        .get("/api/management/v1/deployments/artifacts/..%2F..%2Fetc%2Fpasswd")
        .expect(400);
    assert_eq!(r.json()["error"], "ID is not a valid UUID");
    app.get("/api/management/v1/deployments/deployments?page=0")
        .expect(400);
    app.get("/api/management/v1/deployments/deployments?per_page=501")
        .expect(400);
    app.get("/api/management/v2/devauth/devices?status=bogus")
        .expect(400);
    app.get("/no/such/route").expect(404);
    // An oversized body is refused from its Content-Length, before a byte of it is read: the
    // request announces 5 MiB and sends none of it, and the answer comes anyway. (A client
    // that kept writing the body would race the server's close, so this one does not.)
    let mut s = crate::attacker::tls_connect(app.addr, &app.cert);
    write!(
        s,
        "POST {path} HTTP/1.1\r\nhost: localhost\r\nauthorization: {auth}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        5 << 20
    )
    .unwrap();
    s.flush().unwrap();
    let mut head = [0u8; 64];
    let mut got = 0;
    while got < 12 {
        match s.read(&mut head[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    let head = String::from_utf8_lossy(&head[..got]).into_owned();
    assert!(head.starts_with("HTTP/1.1 413"), "{head:?}");
}

#[test]
fn forged_signatures_and_tokens_are_refused() {
    let app = TestApp::start();
    let mut dev = SimDevice::new("02:00:00:00:00:31");
    let device_id = dev.admit(&app);
    let url = "/api/devices/v1/authentication/auth_requests";
    let body = dev.auth_body();
    // Missing, malformed and wrong signatures; a body changed after signing.
    let call = |sig: Option<&str>, body: Vec<u8>| {
        let mut h = vec![("content-type", "application/json")];
        if let Some(s) = sig {
            h.push(("x-men-signature", s));
        }
        app.call("POST", url, &h, Some(body))
    };
    assert_eq!(call(None, body.clone()).status, 400);
    assert_eq!(call(Some("%%%"), body.clone()).status, 401);
    let other = SimDevice::new("02:00:00:00:00:31");
    assert_eq!(
        call(Some(&other.signature(&body)), body.clone()).status,
        401
    );
    let sig = dev.signature(&body);
    let mut changed = body.clone();
    changed.insert(changed.len() - 1, b' ');
    assert_eq!(
        call(Some(&sig), changed).status,
        401,
        "the signature covers the raw bytes"
    );
    assert_eq!(call(Some(&sig), body.clone()).status, 200);
    // Malformed requests.
    assert_eq!(call(Some(&sig), b"{".to_vec()).status, 400);
    let bad_id = serde_json::to_vec(
        &json!({"id_data": "not json", "pubkey": dev.key.verifying_key().to_pem().unwrap()}),
    )
    .unwrap();
    assert_eq!(call(Some(&dev.signature(&bad_id)), bad_id).status, 400);
    let bad_key = serde_json::to_vec(&json!({"id_data": "{\"mac\":\"x\"}", "pubkey": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"})).unwrap();
    assert_eq!(call(Some(&dev.signature(&bad_key)), bad_key).status, 400);

    // Tokens: forged (another key), expired, wrong audience, and swapped between APIs.
    let keys = Keys::load_or_create(&app.data_dir()).unwrap();
    let now = aloft_server::time::now_us() / 1_000_000;
    let claims = |aud: &str, sub: &str, exp: i64| Claims {
        jti: uuid::Uuid::new_v4().to_string(),
        sub: sub.into(),
        iss: ISSUER.into(),
        aud: aud.into(),
        iat: now,
        exp,
        device: Some(true),
        user: None,
    };
    let forger =
        Keys::from_signing_key(&ed25519_dalek::SigningKey::from_bytes(&[9; 32]), vec![]).unwrap();
    let inventory = "/api/devices/v1/inventory/device/attributes";
    let put_inv = |token: &str| {
        app.call(
            "PUT",
            inventory,
            &[
                ("authorization", &format!("Bearer {token}")),
                ("content-type", "application/json"),
            ],
            Some(b"[]".to_vec()),
        )
    };
    let forged_token = forger
        .issue(&claims(AUD_DEVICE, &device_id, now + 600))
        .unwrap();
    assert_eq!(put_inv(&forged_token).status, 401);
    // Signed by the server's key but never issued (no token record): refused too.
    let unissued = keys
        .issue(&claims(AUD_DEVICE, &device_id, now + 600))
        .unwrap();
    assert_eq!(put_inv(&unissued).status, 401);
    let expired = keys
        .issue(&claims(AUD_DEVICE, &device_id, now - 10))
        .unwrap();
    let r = put_inv(&expired);
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "token expired");
    let wrong_aud = keys
        .issue(&claims("someone-else", &device_id, now + 600))
        .unwrap();
    assert_eq!(put_inv(&wrong_aud).status, 401);
    // A user token on the device API, and a device token on the management API.
    assert_eq!(put_inv(&app.token).status, 401);
    let device_token = dev.token.clone().unwrap();
    assert_eq!(put_inv(&device_token).status, 200);
    let r = app.call(
        "GET",
        "/api/management/v2/devauth/devices",
        &[("authorization", &format!("Bearer {device_token}"))],
        None,
    );
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "token not valid for this API");
    let mgmt_forged = forger
        .issue(&claims(AUD_MANAGEMENT, "anyone", now + 600))
        .unwrap();
    let r = app.call(
        "GET",
        "/api/management/v2/devauth/devices",
        &[("authorization", &format!("Bearer {mgmt_forged}"))],
        None,
    );
    assert_eq!(r.status, 401);
    app.call("GET", "/api/management/v2/devauth/devices", &[], None)
        .expect(401);
    app.call(
        "GET",
        "/api/management/v2/devauth/devices",
        &[("authorization", "Basic eDp5")],
        None,
    )
    .expect(401);

    // Bad inventory values and statuses.
    let r = dev.call(
        &app,
        "PUT",
        inventory,
        Some(&json!([{"name": "a", "value": {"nested": 1}}])),
    );
    assert_eq!(r.status, 400);
    let r = dev.call(
        &app,
        "PUT",
        "/api/devices/v1/deployments/device/deployments/not-a-uuid/status",
        Some(&json!({"status": "success"})),
    );
    assert_eq!(r.status, 400);
    let r = dev.call(
        &app,
        "PUT",
        &format!(
            "/api/devices/v1/deployments/device/deployments/{}/status",
            uuid::Uuid::new_v4()
        ),
        Some(&json!({"status": "exploded"})),
    );
    assert_eq!(r.status, 400);
    let r = dev.call(
        &app,
        "PUT",
        &format!(
            "/api/devices/v1/deployments/device/deployments/{}/status",
            uuid::Uuid::new_v4()
        ),
        Some(&json!({"status": "success"})),
    );
    assert_eq!(r.status, 404);
}

#[test]
fn refused_and_cut_uploads_leave_nothing_behind() {
    let app = TestApp::start();
    let blobs = app.data_dir().join("blobs");
    let good = aloft_testkit::vectors_dir().join("module-single-file.mender");
    let good = std::fs::read(good).unwrap();

    // Every hostile fixture of the artifact library is refused with 400.
    for (name, bytes) in aloft_testkit::hostile::all()
        .into_iter()
        .take(25)
        .map(|f| (f.name, f.bytes))
    {
        let r = app.upload_bytes(&bytes, &[]);
        assert_eq!(r.status, 400, "{name}: {}", r.text());
        assert!(
            r.json()["error"]
                .as_str()
                .unwrap()
                .starts_with("invalid artifact"),
            "{name}: {}",
            r.text()
        );
    }
    // A size part that disagrees, trailing garbage, no artifact part, not multipart.
    app.upload_bytes(&good, &[("size", "12")]).expect(400);
    let mut trailing = good.clone();
    trailing.extend_from_slice(&[1u8; 4096]);
    app.upload_bytes(&trailing, &[]).expect(400);
    let auth = format!("Bearer {}", app.token);
    let r = app.call(
        "POST",
        "/api/management/v1/deployments/artifacts",
        &[
            ("authorization", &auth),
            ("content-type", "multipart/form-data; boundary=b"),
        ],
        Some(
            b"--b\r\nContent-Disposition: form-data; name=\"description\"\r\n\r\nx\r\n--b--\r\n"
                .to_vec(),
        ),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "the request has no artifact part");
    let r = app.call(
        "POST",
        "/api/management/v1/deployments/artifacts",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        Some(b"{}".to_vec()),
    );
    assert_eq!(r.status, 415);

    // An upload cut in the middle of the artifact part.
    let (ctype, body) = multipart(&good, &[]);
    let cut = body[..body.len() / 2].to_vec();
    let r = app.call(
        "POST",
        "/api/management/v1/deployments/artifacts",
        &[("authorization", &auth), ("content-type", &ctype)],
        Some(cut),
    );
    assert_eq!(r.status, 400, "{}", r.text());

    assert_eq!(
        files_under(&blobs),
        Vec::<String>::new(),
        "no blob or temporary upload remains"
    );
    let list = app
        .get("/api/management/v1/deployments/artifacts")
        .expect(200)
        .json();
    assert_eq!(list, json!([]));

    // And the good one is then accepted and stored once, under its digest.
    app.upload_bytes(&good, &[]).expect(201);
    let files = files_under(&blobs);
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].contains("/artifacts/"));
}
