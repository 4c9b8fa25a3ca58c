//! The management flows of `mender-cli` and the two Mender GitHub actions, replayed request
//! by request, with the answers those tools expect (`docs/reference/mender-management-api.md` §6).

use base64::Engine as _;
use serde_json::json;

use crate::common::{ADMIN, PASSWORD, SimDevice, TestApp, mender_single_file};

#[test]
fn mender_cli_login_tokens_and_artifacts() {
    let app = TestApp::start();
    let work = tempfile::tempdir().unwrap();

    // login: Basic, JSON content type, empty body or a 2FA field; the raw JWT back.
    let token = app.login(ADMIN, PASSWORD);
    assert_eq!(token.split('.').count(), 3, "a compact JWT: {token}");
    assert!(!token.ends_with('\n'));
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{PASSWORD}", ADMIN.to_uppercase()));
    let r = app.call(
        "POST",
        "/api/management/v1/useradm/auth/login",
        &[
            ("authorization", &format!("Basic {basic}")),
            ("content-type", "application/json; charset=UTF-8"),
        ],
        Some(br#"{"token2fa":"123456"}"#.to_vec()),
    );
    assert_eq!(
        r.status,
        200,
        "e-mail is case-insensitive, token2fa ignored: {}",
        r.text()
    );
    let bad = base64::engine::general_purpose::STANDARD.encode(format!("{ADMIN}:wrong-password"));
    let r = app
        .call(
            "POST",
            "/api/management/v1/useradm/auth/login",
            &[
                ("authorization", &format!("Basic {bad}")),
                ("x-men-requestid", "req-42"),
            ],
            None,
        )
        .expect(401);
    assert_eq!(r.header("x-men-requestid"), Some("req-42"));
    assert_eq!(r.json()["request_id"], "req-42");
    assert!(r.json()["error"].is_string());

    // personal access tokens: raw JWT with 200; listed without value; revoked on delete.
    let r = app
        .post(
            "/api/management/v1/useradm/settings/tokens",
            &json!({"name": "ci-upload", "expires_in": 3600}),
        )
        .expect(200);
    assert_eq!(r.header("content-type"), Some("application/jwt"));
    let pat = r.text();
    app.post(
        "/api/management/v1/useradm/settings/tokens",
        &json!({"name": "ci-upload"}),
    )
    .expect(409);
    let list = app
        .get("/api/management/v1/useradm/settings/tokens")
        .expect(200)
        .json();
    assert_eq!(list[0]["name"], "ci-upload");
    assert!(list[0]["expiration_date"].is_string());
    assert!(!list.to_string().contains(&pat));
    let with_pat = |path: &str| {
        app.call(
            "GET",
            path,
            &[("authorization", &format!("Bearer {pat}"))],
            None,
        )
    };
    with_pat("/api/management/v1/deployments/artifacts/list").expect(200);
    let pat_id = list[0]["id"].as_str().unwrap();
    app.delete(&format!(
        "/api/management/v1/useradm/settings/tokens/{pat_id}"
    ))
    .expect(204);
    with_pat("/api/management/v1/deployments/artifacts/list").expect(401);

    // artifacts upload: size, description, then artifact; 201 with an empty body.
    let art = mender_single_file(
        work.path(),
        "release-1.4.0",
        "rpi4",
        std::path::Path::new("/opt/app"),
        &[7u8; 10_000],
    );
    let size = std::fs::metadata(&art).unwrap().len();
    let r = app
        .upload(
            &art,
            &[
                ("size", &size.to_string()),
                ("description", "nightly build"),
            ],
        )
        .expect(201);
    assert!(r.body.is_empty());
    let id = r.created_id();
    // A second upload of the same name and device type conflicts, in words the upload action knows.
    let r = app.upload(&art, &[]).expect(409);
    assert!(
        r.text()
            .contains("An artifact with the same name has conflicting depends"),
        "{}",
        r.text()
    );
    assert_eq!(r.json()["metadata"]["conflict"]["device_type"], "rpi4");

    // artifacts list (paged and old unpaged): bare arrays.
    let r = app
        .get("/api/management/v1/deployments/artifacts/list?page=1&per_page=20")
        .expect(200);
    assert_eq!(r.header("x-total-count"), Some("1"));
    let a = &r.json()[0];
    assert_eq!(a["id"], id.as_str());
    assert_eq!(a["name"], "release-1.4.0");
    assert_eq!(a["description"], "nightly build");
    assert_eq!(a["device_types_compatible"], json!(["rpi4"]));
    assert_eq!(a["info"], json!({"format": "mender", "version": 3}));
    assert_eq!(a["signed"], false);
    assert_eq!(a["size"], size);
    assert_eq!(a["updates"][0]["type_info"]["type"], "single-file");
    let files: Vec<_> = a["updates"][0]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(files, ["dest_dir", "filename", "payload.txt"]);
    assert_eq!(a["artifact_provides"]["artifact_name"], "release-1.4.0");
    assert_eq!(
        app.get("/api/management/v1/deployments/artifacts")
            .expect(200)
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // download: a link that works without authorization; exact type and size; ranges.
    let link = app
        .get(&format!(
            "/api/management/v1/deployments/artifacts/{id}/download"
        ))
        .expect(200)
        .json();
    let uri = link["uri"].as_str().unwrap().to_owned();
    assert!(link["expire"].as_str().unwrap().ends_with('Z'));
    let r = app.call("GET", &uri, &[], None).expect(200);
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.mender-artifact")
    );
    assert_eq!(r.body, std::fs::read(&art).unwrap());
    let etag = r.header("etag").unwrap().to_owned();
    let r = app
        .call("GET", &uri, &[("range", "bytes=100-")], None)
        .expect(206);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 100-{}/{size}", size - 1).as_str())
    );
    assert_eq!(r.body, std::fs::read(&art).unwrap()[100..]);
    app.call(
        "GET",
        &uri,
        &[("range", "bytes=100-"), ("if-range", &etag)],
        None,
    )
    .expect(206);
    let r = app
        .call(
            "GET",
            &uri,
            &[("range", "bytes=100-"), ("if-range", "\"changed\"")],
            None,
        )
        .expect(200);
    assert_eq!(
        r.body.len() as u64,
        size,
        "a changed file is sent whole, never spliced"
    );
    app.call("GET", &uri, &[("range", &format!("bytes={size}-"))], None)
        .expect(416);
    let forged = uri.replace("x-men-signature=", "x-men-signature=AAAA");
    app.call("GET", &forged, &[], None).expect(403);

    // Over HTTP/2 (curl negotiates it; the host travels as :authority) the link is the same.
    let out = std::process::Command::new("curl")
        .args(["-sf", "--http2", "--cacert"])
        .arg(&app.cert)
        .args(["-H", &format!("Authorization: Bearer {}", app.token)])
        .arg(app.url(&format!(
            "/api/management/v1/deployments/artifacts/{id}/download"
        )))
        .output()
        .expect("curl runs");
    let h2: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON from curl");
    assert!(
        h2["uri"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/api/devices/", app.base())),
        "{h2}"
    );

    // devices list (v2 devauth): a bare array.
    let mut dev = SimDevice::new("52:54:00:12:34:56");
    dev.admit(&app);
    let devices = app
        .get("/api/management/v2/devauth/devices?page=1&per_page=20")
        .expect(200)
        .json();
    assert_eq!(devices[0]["identity_data"]["mac"], "52:54:00:12:34:56");
    assert_eq!(devices[0]["auth_sets"][0]["status"], "accepted");
    assert_eq!(devices[0]["decommissioning"], false);
    assert_eq!(
        app.get("/api/management/v2/devauth/devices/count?status=accepted")
            .expect(200)
            .json()["count"],
        1
    );

    // artifacts delete: 204, then gone, and the download link no longer works.
    app.delete(&format!("/api/management/v1/deployments/artifacts/{id}"))
        .expect(204);
    app.get(&format!("/api/management/v1/deployments/artifacts/{id}"))
        .expect(404);
    app.call("GET", &uri, &[], None).expect(404);

    // Users: create, filter, duplicate, short password.
    let r = app
        .post(
            "/api/management/v1/useradm/users",
            &json!({"email": "Second@Example.com", "password": "long-enough-1"}),
        )
        .expect(201);
    assert!(r.body.is_empty());
    let second = r
        .header("location")
        .unwrap()
        .strip_prefix("users/")
        .unwrap()
        .to_owned();
    app.post(
        "/api/management/v1/useradm/users",
        &json!({"email": "second@example.com", "password": "long-enough-2"}),
    )
    .expect(422);
    app.post(
        "/api/management/v1/useradm/users",
        &json!({"email": "third@example.com", "password": "short"}),
    )
    .expect(422);
    let found = app
        .get("/api/management/v1/useradm/users?email=SECOND@example.com")
        .expect(200)
        .json();
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert_eq!(found[0]["id"], second.as_str());
    assert_eq!(
        app.get(&format!(
            "/api/management/v1/useradm/users?id={second}&id=nobody"
        ))
        .expect(200)
        .json()
        .as_array()
        .unwrap()
        .len(),
        1
    );
    assert_eq!(
        app.get("/api/management/v1/useradm/users?created_after=4102444800")
            .expect(200)
            .json(),
        json!([])
    );
    app.get("/api/management/v1/useradm/users?created_after=yesterday")
        .expect(400);
    app.delete(&format!("/api/management/v1/useradm/users/{second}"))
        .expect(204);

    // Nobody deletes their own account (the last operator would lock everyone out).
    app.delete("/api/management/v1/useradm/users/me")
        .expect(422);
    let me = app
        .get("/api/management/v1/useradm/users/me")
        .expect(200)
        .json();
    app.delete(&format!(
        "/api/management/v1/useradm/users/{}",
        me["id"].as_str().unwrap()
    ))
    .expect(422);

    // logout revokes the session token.
    app.call(
        "POST",
        "/api/management/v1/useradm/auth/logout",
        &[("authorization", &format!("Bearer {token}"))],
        None,
    )
    .expect(202);
    app.call(
        "GET",
        "/api/management/v1/useradm/users/me",
        &[("authorization", &format!("Bearer {token}"))],
        None,
    )
    .expect(401);
}

#[test]
fn github_actions_upload_and_create_deployment() {
    let app = TestApp::start();
    let work = tempfile::tempdir().unwrap();
    let pat = app
        .post(
            "/api/management/v1/useradm/settings/tokens",
            &json!({"name": "gh"}),
        )
        .expect(200)
        .text();
    let curl = |method: &str, path: &str, ctype: &str, body: Vec<u8>| {
        app.call(
            method,
            path,
            &[
                ("authorization", &format!("Bearer {pat}")),
                ("content-type", ctype),
                ("accept", "application/json"),
            ],
            Some(body),
        )
    };

    // upload-artifact: one part only; an empty body is success; a duplicate says the old words.
    let art = mender_single_file(
        work.path(),
        "app-2.0",
        "test-device",
        std::path::Path::new("/opt"),
        b"v2",
    );
    let (ctype, body) = crate::common::multipart(&std::fs::read(&art).unwrap(), &[]);
    let r = curl(
        "POST",
        "/api/management/v1/deployments/artifacts",
        &ctype,
        body.clone(),
    );
    assert_eq!(r.status, 201);
    assert!(r.body.is_empty());
    let r = curl(
        "POST",
        "/api/management/v1/deployments/artifacts",
        &ctype,
        body,
    );
    assert!(
        r.text()
            .contains("An artifact with the same name has conflicting depends")
    );

    // Three accepted devices: two in group "staging", one tagged site=oslo.
    let mut ids = Vec::new();
    for mac in [
        "02:00:00:00:00:01",
        "02:00:00:00:00:02",
        "02:00:00:00:00:03",
    ] {
        ids.push(SimDevice::new(mac).admit(&app));
    }
    app.send_json(
        "PATCH",
        "/api/management/v1/inventory/groups/staging/devices",
        &json!([ids[0], ids[1]]),
    )
    .expect(200);
    app.put(
        &format!("/api/management/v1/inventory/devices/{}/tags", ids[2]),
        &json!([{"name": "site", "value": "oslo"}]),
    )
    .expect(200);

    // create-deployment, group input.
    let group_body = serde_json::to_vec(
        &json!({"name": "to-staging", "artifact_name": "app-2.0", "retries": 1}),
    )
    .unwrap();
    let r = curl(
        "POST",
        "/api/management/v1/deployments/deployments/group/staging",
        "application/json",
        group_body.clone(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(r.body.is_empty());
    let loc = r.header("location").unwrap();
    assert!(
        loc.starts_with("./management/v1/deployments/deployments/"),
        "{loc}"
    );
    let dep = app
        .get(&format!(
            "/api/management/v1/deployments/deployments/{}",
            loc.rsplit('/').next().unwrap()
        ))
        .expect(200)
        .json();
    assert_eq!(dep["max_devices"], 2);
    assert_eq!(dep["device_count"], 0);
    assert_eq!(dep["status"], "pending");
    assert_eq!(dep["groups"], json!(["staging"]));
    // Running the action again while it is active: 409, and a body, so the job fails.
    let r = curl(
        "POST",
        "/api/management/v1/deployments/deployments/group/staging",
        "application/json",
        group_body,
    );
    assert_eq!(r.status, 409);
    assert!(!r.body.is_empty());

    // create-deployment, attribute input: only the first key=value pair reaches the server.
    let found = app
        .get("/api/management/v1/inventory/devices?tags/site=oslo")
        .expect(200)
        .json();
    let found: Vec<String> = found
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(found, [ids[2].clone()]);
    let body = serde_json::to_vec(
        &json!({"name": "to-oslo", "artifact_name": "app-2.0", "retries": 1, "devices": found}),
    )
    .unwrap();
    let r = curl(
        "POST",
        "/api/management/v1/deployments/deployments",
        "application/json",
        body,
    );
    assert_eq!(r.status, 201);
    assert!(r.body.is_empty());

    // An empty device list, an unknown release, or both targets at once.
    let body = serde_json::to_vec(
        &json!({"name": "none", "artifact_name": "app-2.0", "retries": 1, "devices": []}),
    )
    .unwrap();
    assert_eq!(
        curl(
            "POST",
            "/api/management/v1/deployments/deployments",
            "application/json",
            body
        )
        .status,
        400
    );
    let body =
        serde_json::to_vec(&json!({"name": "x", "artifact_name": "nope", "devices": [ids[0]]}))
            .unwrap();
    let r = curl(
        "POST",
        "/api/management/v1/deployments/deployments",
        "application/json",
        body,
    );
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["error"], "No artifact for the deployment");
    let body = serde_json::to_vec(
        &json!({"name": "x", "artifact_name": "app-2.0", "devices": [ids[0]], "all_devices": true}),
    )
    .unwrap();
    assert_eq!(
        curl(
            "POST",
            "/api/management/v1/deployments/deployments",
            "application/json",
            body
        )
        .status,
        400
    );

    // The list, newest first, with totals and links.
    let r = app
        .get("/api/management/v1/deployments/deployments?per_page=1")
        .expect(200);
    assert_eq!(r.header("x-total-count"), Some("2"));
    assert_eq!(r.json()[0]["name"], "to-oslo");
    assert!(r.header("link").unwrap().contains("rel=\"next\""));
    let groups = app
        .get("/api/management/v1/inventory/groups")
        .expect(200)
        .json();
    assert_eq!(groups, json!(["staging"]));
    let members = app
        .get("/api/management/v1/inventory/groups/staging/devices")
        .expect(200);
    assert_eq!(members.header("x-total-count"), Some("2"));
}
