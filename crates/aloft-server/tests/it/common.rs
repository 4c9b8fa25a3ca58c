//! `TestApp`: a real `aloft-server` (TLS, `SQLite` and blobs in a temporary folder) on loopback,
//! and a small blocking HTTPS client that trusts its certificate.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aloft_server::config::{BlobLocation, S3Config, Secret, ServerConfig};
use aloft_server::http::Settings;
use aloft_server::server::{self, Running};
use aloft_testkit::s3::S3Server;
use serde_json::Value;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

pub(crate) const ADMIN: &str = "admin@example.com";
pub(crate) const PASSWORD: &str = "correct-horse-battery";

/// An answer.
#[derive(Debug)]
pub(crate) struct Resp {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Resp {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// The id at the end of the `Location` of a 201.
    #[track_caller]
    pub(crate) fn created_id(&self) -> String {
        let at = self.header("location").expect("a Location header");
        at.rsplit('/').next().unwrap_or_default().to_owned()
    }
    /// Asserts the status, showing the body when it differs.
    #[track_caller]
    pub(crate) fn expect(self, status: u16) -> Self {
        assert_eq!(self.status, status, "unexpected answer: {}", self.text());
        self
    }
}

/// Where a server listens and the certificate it shows.
pub(crate) struct FakeServer {
    pub(crate) addr: SocketAddr,
    pub(crate) cert: PathBuf,
}

/// A server under test.
pub(crate) struct TestApp {
    pub(crate) rt: tokio::runtime::Runtime,
    running: Option<Running>,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) addr: SocketAddr,
    pub(crate) cert: PathBuf,
    pub(crate) agent: ureq::Agent,
    pub(crate) token: String,
    /// The configuration it was started with (`None`: a client of a server started elsewhere).
    pub(crate) config: Option<ServerConfig>,
    /// The S3 server of its artifact files (`ALOFT_TEST_BLOBS=s3`).
    s3: Option<S3Server>,
    /// The `PostgreSQL` database this server made, dropped at the end (replicas own none).
    database: Option<TestDatabase>,
}

/// A fresh database on the `PostgreSQL` server at `ALOFT_TEST_POSTGRES_URL`.
struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// `Some` when the tests run on `PostgreSQL` (`ALOFT_TEST_BACKEND=postgres`).
    async fn create_if_asked() -> Option<Self> {
        if std::env::var("ALOFT_TEST_BACKEND").as_deref() != Ok("postgres") {
            return None;
        }
        Some(Self::create().await)
    }

    async fn create() -> Self {
        use sqlx::{Connection as _, Executor as _};
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let admin_url = std::env::var("ALOFT_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!(
            "aloft_it_{}_{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        sqlx::any::install_default_drivers();
        let mut admin = sqlx::AnyConnection::connect(&admin_url)
            .await
            .expect("PostgreSQL for ALOFT_TEST_BACKEND=postgres (scripts/test.sh starts one)");
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap();
        let root = admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(r, _)| r);
        let url = format!("{root}/{name}");
        Self {
            admin_url,
            name,
            url,
        }
    }

    async fn drop_database(&self) {
        use sqlx::{Connection as _, Executor as _};
        if let Ok(mut admin) = sqlx::AnyConnection::connect(&self.admin_url).await {
            let _ = admin
                .execute(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name).as_str())
                .await;
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

pub(crate) fn agent_for(cert: &Path) -> ureq::Agent {
    let pem = std::fs::read(cert).unwrap();
    let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
        .filter_map(|i| match i {
            Ok(PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    let tls = TlsConfig::builder()
        .root_certs(RootCerts::Specific(Arc::new(certs)))
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

impl TestApp {
    pub(crate) fn start() -> Self {
        Self::start_with(Settings::default())
    }

    pub(crate) fn start_with(settings: Settings) -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), settings)
    }

    /// On a configuration made for its data folder (blobs in S3, shared keys, ...).
    pub(crate) fn start_config(make: impl FnOnce(&Path) -> ServerConfig) -> Self {
        let rt = runtime();
        let database = rt.block_on(TestDatabase::create_if_asked());
        Self::launch(rt, make, database, None)
    }

    /// Starts a server: on `database` (or `url`) when given, after creating the admin there.
    fn launch(
        rt: tokio::runtime::Runtime,
        make: impl FnOnce(&Path) -> ServerConfig,
        database: Option<TestDatabase>,
        url: Option<&str>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = make(&dir.path().join("data"));
        if let Some(url) = database.as_ref().map(|d| d.url.as_str()).or(url) {
            url.clone_into(&mut cfg.database_url);
        }
        rt.block_on(async {
            let store = server::open_store_url(&cfg.data_dir, Some(&cfg.database_url))
                .await
                .unwrap();
            aloft_server::http::useradm::create_user_row(&store, ADMIN, PASSWORD)
                .await
                .unwrap();
            store.close().await;
        });
        Self::serve(rt, dir, cfg, database).unwrap()
    }

    /// Starts the server of `cfg` and logs the admin in.
    fn serve(
        rt: tokio::runtime::Runtime,
        dir: tempfile::TempDir,
        cfg: ServerConfig,
        database: Option<TestDatabase>,
    ) -> anyhow::Result<Self> {
        let running = rt.block_on(server::start_config(cfg.clone()))?;
        let agent = agent_for(&running.cert);
        let mut app = Self {
            addr: running.addr,
            cert: running.cert.clone(),
            running: Some(running),
            rt,
            dir,
            agent,
            token: String::new(),
            config: Some(cfg),
            s3: None,
            database,
        };
        app.token = app.login(ADMIN, PASSWORD);
        Ok(app)
    }

    /// On a given address (for a public URL that names its port). With `ALOFT_TEST_BLOBS=s3`,
    /// its artifact files are in an S3 server of its own, so a test runs again on S3 (plain
    /// HTTP for now: tests whose devices refuse plain-HTTP downloads, or that look at the
    /// server's own download route or blob folder, do not pass that way yet). With
    /// `ALOFT_TEST_BACKEND=postgres`, on a fresh `PostgreSQL` database.
    pub(crate) fn start_on(listen: SocketAddr, settings: Settings) -> Self {
        let s3 = (std::env::var("ALOFT_TEST_BLOBS").as_deref() == Ok("s3"))
            .then(|| S3Server::start(&std::env::temp_dir()));
        let mut app = Self::start_config(|data| {
            let mut cfg = ServerConfig::for_data_dir(data, listen, settings);
            if let Some(s3) = &s3 {
                cfg.blobs = s3_location(s3, None);
            }
            cfg
        });
        app.s3 = s3;
        app
    }

    /// On a fresh `PostgreSQL` database whatever `ALOFT_TEST_BACKEND` says (replica tests).
    pub(crate) fn start_shared() -> Self {
        let rt = runtime();
        let database = rt.block_on(TestDatabase::create());
        Self::launch(rt, default_config, Some(database), None)
    }

    /// On the database at `url` (which the test owns).
    pub(crate) fn start_on_url(url: &str) -> Self {
        Self::launch(runtime(), default_config, None, Some(url))
    }

    /// Another replica of this server: the same database and keys, its own data folder, port
    /// and caches.
    pub(crate) fn replica(&self) -> Self {
        Self::try_replica(&self.data_dir(), self.database_url()).unwrap()
    }

    /// Starts a replica on `url` with the keys in `keys_dir` (where there are none, it makes
    /// its own).
    pub(crate) fn try_replica(keys_dir: &Path, url: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        for key in ["jwt-ed25519.pem", "url-secret"] {
            if keys_dir.join(key).exists() {
                std::fs::copy(keys_dir.join(key), data.join(key)).unwrap();
            }
        }
        let mut cfg = default_config(&data);
        url.clone_into(&mut cfg.database_url);
        Self::serve(runtime(), dir, cfg, None)
    }

    /// A client of a server started elsewhere (a process, a load balancer) at `addr`, whose
    /// certificate is `cert`; logs the admin in.
    pub(crate) fn client(addr: SocketAddr, cert: &Path) -> Self {
        let mut app = Self {
            addr,
            cert: cert.to_owned(),
            running: None,
            rt: runtime(),
            dir: tempfile::tempdir().unwrap(),
            agent: agent_for(cert),
            token: String::new(),
            config: None,
            s3: None,
            database: None,
        };
        app.token = app.login(ADMIN, PASSWORD);
        app
    }

    /// The database URL of a server on `PostgreSQL`.
    pub(crate) fn database_url(&self) -> &str {
        let url = self.config.as_ref().map_or("", |c| c.database_url.as_str());
        assert!(
            url.starts_with("postgres"),
            "a server on PostgreSQL, not {url:?}"
        );
        url
    }

    /// Stops the server (gracefully) and starts it again on the same port and data.
    pub(crate) fn restart(&mut self) {
        let running = self.running.take().unwrap();
        self.rt.block_on(running.shutdown()).unwrap();
        let mut cfg = self.config.clone().expect("a server this test started");
        cfg.listen = self.addr;
        self.running = Some(self.rt.block_on(server::start_config(cfg)).unwrap());
    }

    pub(crate) fn base(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    pub(crate) fn url(&self, path: &str) -> String {
        if path.starts_with("https://") || path.starts_with("http://") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base())
        }
    }

    /// A raw request.
    pub(crate) fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Resp {
        let mut b = ureq::http::Request::builder()
            .method(method)
            .uri(self.url(path));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let resp = match body {
            Some(body) => self.agent.run(b.body(body).unwrap()),
            None => self.agent.run(b.body(()).unwrap()),
        }
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
            .collect();
        let body = resp
            .into_body()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .unwrap_or_default();
        Resp {
            status,
            headers,
            body,
        }
    }

    fn auth(&self) -> String {
        format!("Bearer {}", self.token)
    }

    pub(crate) fn get(&self, path: &str) -> Resp {
        self.call("GET", path, &[("authorization", &self.auth())], None)
    }

    pub(crate) fn delete(&self, path: &str) -> Resp {
        self.call("DELETE", path, &[("authorization", &self.auth())], None)
    }

    pub(crate) fn send_json(&self, method: &str, path: &str, body: &Value) -> Resp {
        self.call(
            method,
            path,
            &[
                ("authorization", &self.auth()),
                ("content-type", "application/json"),
            ],
            Some(serde_json::to_vec(body).unwrap()),
        )
    }

    pub(crate) fn post(&self, path: &str, body: &Value) -> Resp {
        self.send_json("POST", path, body)
    }

    pub(crate) fn put(&self, path: &str, body: &Value) -> Resp {
        self.send_json("PUT", path, body)
    }

    pub(crate) fn login(&self, email: &str, password: &str) -> String {
        use base64::Engine as _;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{email}:{password}"));
        let r = self
            .call(
                "POST",
                "/api/management/v1/useradm/auth/login",
                &[
                    ("authorization", &format!("Basic {basic}")),
                    ("content-type", "application/json"),
                ],
                None,
            )
            .expect(200);
        assert_eq!(r.header("content-type"), Some("application/jwt"));
        r.text()
    }

    /// Uploads an artifact file as multipart, with the given extra parts before it.
    pub(crate) fn upload(&self, file: &Path, parts: &[(&str, &str)]) -> Resp {
        let bytes = std::fs::read(file).unwrap();
        self.upload_bytes(&bytes, parts)
    }

    pub(crate) fn upload_bytes(&self, bytes: &[u8], parts: &[(&str, &str)]) -> Resp {
        let (ctype, body) = multipart(bytes, parts);
        self.call(
            "POST",
            "/api/management/v1/deployments/artifacts",
            &[("authorization", &self.auth()), ("content-type", &ctype)],
            Some(body),
        )
    }

    /// Uploads and returns the new artifact's id.
    pub(crate) fn upload_ok(&self, file: &Path) -> String {
        let r = self.upload(file, &[]).expect(201);
        assert!(r.body.is_empty(), "a create answers an empty body");
        let loc = r.header("location").unwrap().to_owned();
        assert!(
            loc.starts_with("./management/v1/deployments/artifacts/"),
            "{loc}"
        );
        loc.rsplit('/').next().unwrap().to_owned()
    }

    /// Creates a deployment and returns its id.
    pub(crate) fn deploy(&self, name: &str, artifact: &str, devices: &[&str]) -> String {
        self.create_deployment(
            &serde_json::json!({"name": name, "artifact_name": artifact, "devices": devices}),
        )
    }

    /// Creates a deployment from a whole body; returns its id.
    pub(crate) fn create_deployment(&self, body: &Value) -> String {
        let r = self
            .post("/api/management/v1/deployments/deployments", body)
            .expect(201);
        r.created_id()
    }

    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            let _ = self.rt.block_on(r.shutdown());
        }
        if let Some(db) = self.database.take() {
            self.rt.block_on(db.drop_database());
        }
    }
}

/// The configuration of a single server on `data`, on a free port.
fn default_config(data: &Path) -> ServerConfig {
    ServerConfig::for_data_dir(data, "127.0.0.1:0".parse().unwrap(), Settings::default())
}

/// A fresh `PostgreSQL` database for servers a test starts as processes, dropped at the end.
pub(crate) struct PgDatabase {
    rt: tokio::runtime::Runtime,
    db: TestDatabase,
}

impl PgDatabase {
    pub(crate) fn create() -> Self {
        let rt = runtime();
        let db = rt.block_on(TestDatabase::create());
        Self { rt, db }
    }

    pub(crate) fn url(&self) -> &str {
        &self.db.url
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        self.rt.block_on(self.db.drop_database());
    }
}

/// The key prefix of the test servers' S3 files.
pub(crate) const S3_PREFIX: &str = "fleet";

/// The test S3 server's bucket, seen by the server at its endpoint and by devices at
/// `public_endpoint`.
pub(crate) fn s3_location(s3: &S3Server, public_endpoint: Option<String>) -> BlobLocation {
    BlobLocation::S3(S3Config {
        bucket: aloft_testkit::s3::BUCKET.into(),
        prefix: S3_PREFIX.into(),
        endpoint: Some(s3.endpoint.clone()),
        public_endpoint,
        region: "us-east-1".into(),
        access_key_id: Some(aloft_testkit::s3::ACCESS_KEY.into()),
        secret_access_key: Some(Secret(aloft_testkit::s3::SECRET_KEY.into())),
        allow_http: true,
    })
}

/// A multipart/form-data body: the given text parts, then `artifact`.
pub(crate) fn multipart(artifact: &[u8], parts: &[(&str, &str)]) -> (String, Vec<u8>) {
    let boundary = "aloft-test-boundary-7d1c0b";
    let mut body = Vec::new();
    for (name, value) in parts {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"artifact\"; filename=\"a.mender\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(artifact);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Writes a single-file Update Module artifact with the real `mender-artifact`.
pub(crate) fn mender_single_file(
    dir: &Path,
    name: &str,
    device_type: &str,
    dest_dir: &Path,
    content: &[u8],
) -> PathBuf {
    mender_module_artifact(dir, name, device_type, "single-file", dest_dir, content)
}

/// Writes a module artifact of `module_type` whose payload is `dest_dir`, `filename` and
/// `payload.txt` (the single-file module's layout), with the real `mender-artifact`.
pub(crate) fn mender_module_artifact(
    dir: &Path,
    name: &str,
    device_type: &str,
    module_type: &str,
    dest_dir: &Path,
    content: &[u8],
) -> PathBuf {
    let work = dir.join(format!("src-{name}"));
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("dest_dir"), dest_dir.to_str().unwrap()).unwrap();
    std::fs::write(work.join("filename"), "payload.txt").unwrap();
    std::fs::write(work.join("payload.txt"), content).unwrap();
    let out = dir.join(format!("{name}.mender"));
    let status = std::process::Command::new("mender-artifact")
        .args([
            "write",
            "module-image",
            "-T",
            module_type,
            "-n",
            name,
            "-t",
            device_type,
            "-o",
        ])
        .arg(&out)
        .arg("-f")
        .arg(work.join("dest_dir"))
        .arg("-f")
        .arg(work.join("filename"))
        .arg("-f")
        .arg(work.join("payload.txt"))
        .status()
        .expect("mender-artifact runs (Debian package mender-artifact)");
    assert!(status.success(), "mender-artifact write failed");
    out
}

/// Waits until `f` returns Some, or panics after `secs` with `what`.
#[track_caller]
pub(crate) fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {secs}s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A device speaking the Mender device protocol from the test (signed auth requests).
pub(crate) struct SimDevice {
    pub(crate) key: aloft_artifact::SigningKey,
    pub(crate) identity: Value,
    pub(crate) token: Option<String>,
    pub(crate) device_type: String,
}

impl SimDevice {
    pub(crate) fn new(mac: &str) -> Self {
        Self::with_key(mac, aloft_artifact::KeyType::Ed25519)
    }

    pub(crate) fn with_key(mac: &str, kind: aloft_artifact::KeyType) -> Self {
        Self {
            key: aloft_artifact::SigningKey::generate(kind).unwrap(),
            identity: serde_json::json!({"mac": mac}),
            token: None,
            device_type: "test-device".into(),
        }
    }

    /// The exact body a Mender client sends (with its trailing newline).
    pub(crate) fn auth_body(&self) -> Vec<u8> {
        let body = serde_json::json!({
            "id_data": self.identity.to_string(),
            "tenant_token": "",
            "pubkey": self.key.verifying_key().to_pem().unwrap(),
        });
        let mut bytes = serde_json::to_vec(&body).unwrap();
        bytes.push(b'\n');
        bytes
    }

    pub(crate) fn signature(&self, body: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(self.key.sign(body))
    }

    /// Sends an auth request; keeps the token on 200.
    pub(crate) fn auth(&mut self, app: &TestApp) -> u16 {
        let body = self.auth_body();
        let sig = self.signature(&body);
        let r = app.call(
            "POST",
            "/api/devices/v1/authentication/auth_requests",
            &[
                ("content-type", "application/json"),
                ("x-men-signature", &sig),
                ("authorization", "Bearer "),
            ],
            Some(body),
        );
        if r.status == 200 {
            self.token = Some(r.text());
        }
        r.status
    }

    pub(crate) fn call(
        &self,
        app: &TestApp,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Resp {
        let auth = format!("Bearer {}", self.token.as_deref().unwrap_or_default());
        let mut headers = vec![("authorization", auth.as_str())];
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        app.call(
            method,
            path,
            &headers,
            body.map(|b| serde_json::to_vec(b).unwrap()),
        )
    }

    pub(crate) fn inventory(&self, app: &TestApp, attrs: &[(&str, &str)]) -> Resp {
        let body: Vec<Value> = attrs
            .iter()
            .map(|(k, v)| serde_json::json!({"name": k, "value": v}))
            .collect();
        self.call(
            app,
            "PUT",
            "/api/devices/v1/inventory/device/attributes",
            Some(&Value::Array(body)),
        )
    }

    /// `next` v2 with these provides; `artifact_name` and `device_type` are added.
    pub(crate) fn next(&self, app: &TestApp, installed: &str) -> Resp {
        let body = serde_json::json!({
            "device_provides": {"artifact_name": installed, "device_type": self.device_type},
            "update_control_map": false,
        });
        self.call(
            app,
            "POST",
            "/api/devices/v2/deployments/device/deployments/next",
            Some(&body),
        )
    }

    pub(crate) fn status(&self, app: &TestApp, deployment: &str, status: &str) -> Resp {
        self.call(
            app,
            "PUT",
            &format!("/api/devices/v1/deployments/device/deployments/{deployment}/status"),
            Some(&serde_json::json!({"status": status})),
        )
    }

    /// Authenticates (pending), lets the admin accept it, authenticates again; returns its id.
    pub(crate) fn admit(&mut self, app: &TestApp) -> String {
        assert_eq!(self.auth(app), 401, "a new device is pending");
        let list = app
            .get("/api/management/v2/devauth/devices?status=pending&per_page=500")
            .expect(200)
            .json();
        let pem = self.key.verifying_key().to_pem().unwrap();
        let dev = list
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["auth_sets"][0]["pubkey"] == pem.as_str())
            .expect("the device is listed as pending")
            .clone();
        let id = dev["id"].as_str().unwrap().to_owned();
        let aid = dev["auth_sets"][0]["id"].as_str().unwrap();
        app.put(
            &format!("/api/management/v2/devauth/devices/{id}/auth/{aid}/status"),
            &serde_json::json!({"status": "accepted"}),
        )
        .expect(204);
        assert_eq!(self.auth(app), 200);
        id
    }
}
