//! Three `aloft-server` processes on one `PostgreSQL` database and one S3 bucket behind
//! `HAProxy`: a fleet of aloft daemons and real Mender clients takes one release while a
//! replica is killed with `kill -9` and started again.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aloft_testkit::haproxy::{Haproxy, free_port};
use aloft_testkit::s3::S3Server;
use serde_json::Value;

use crate::common::{
    ADMIN, FakeServer, PASSWORD, PgDatabase, S3_PREFIX, TestApp, mender_single_file, wait_for,
};
use crate::daemon::{SimDaemon, accept, bin, rootfs_artifact};
use crate::mender_client::start_mender_with;
use crate::replicas::{expect_event, listen};

/// One `aloft-server serve` process of the cluster.
struct Replica {
    child: Option<Child>,
    port: u16,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
}

impl Replica {
    fn start(data: &Path, port: u16, database_url: &str, s3: &S3Server, log: PathBuf) -> Self {
        let args = vec![
            "serve".to_owned(),
            "--data-dir".to_owned(),
            data.display().to_string(),
            "--listen".to_owned(),
            format!("127.0.0.1:{port}"),
            "--log-json".to_owned(),
            "true".to_owned(),
        ];
        let env = vec![
            ("ALOFT_DATABASE_URL".to_owned(), database_url.to_owned()),
            (
                "ALOFT_BLOB_URL".to_owned(),
                format!("s3://{}/{S3_PREFIX}", aloft_testkit::s3::BUCKET),
            ),
            ("ALOFT_S3_ENDPOINT".to_owned(), s3.endpoint.clone()),
            (
                "ALOFT_S3_ACCESS_KEY_ID".to_owned(),
                aloft_testkit::s3::ACCESS_KEY.to_owned(),
            ),
            (
                "ALOFT_S3_SECRET_ACCESS_KEY".to_owned(),
                aloft_testkit::s3::SECRET_KEY.to_owned(),
            ),
            ("ALOFT_S3_ALLOW_HTTP".to_owned(), "true".to_owned()),
            ("ALOFT_LOG".to_owned(), "info".to_owned()),
        ];
        let mut r = Self {
            child: None,
            port,
            args,
            env,
            log,
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(bin("aloft-server"))
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let addr = self.addr();
        wait_for(30, "the replica listens", || {
            std::net::TcpStream::connect(addr).ok().map(|_| ())
        });
    }

    fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// `kill -9`.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

fn deployment(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/api/management/v1/deployments/deployments/{id}"))
        .expect(200)
        .json()
}

/// What each device that failed deployment `id` logged, for a failed assertion's message.
fn failure_logs(app: &TestApp, id: &str) -> String {
    let devices = app
        .get(&format!(
            "/api/management/v1/deployments/deployments/{id}/devices"
        ))
        .json();
    let mut out = String::new();
    for dev in devices.as_array().into_iter().flatten() {
        if dev["status"] == "failure" {
            let log = app.get(&format!(
                "/api/management/v1/deployments/deployments/{id}/devices/{}/log",
                dev["id"].as_str().unwrap_or_default()
            ));
            let _ = writeln!(out, "{dev}\n{}", String::from_utf8_lossy(&log.body));
        }
    }
    out
}

#[test]
fn three_replicas_behind_haproxy_take_a_fleet_through_a_replica_kill() {
    let db = PgDatabase::create();
    let work = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(work.path());
    // One data folder for all three: the same keys and TLS certificate (a shared volume);
    // metadata in PostgreSQL, artifact files in S3.
    let data = work.path().join("server");
    let out = Command::new(bin("aloft-server"))
        .args(["user", "create", "--data-dir"])
        .arg(&data)
        .args(["--email", ADMIN, "--password", PASSWORD])
        .env("ALOFT_DATABASE_URL", db.url())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut replicas = Vec::new();
    for i in 1..=3 {
        let log = work.path().join(format!("replica{i}.log"));
        replicas.push(Replica::start(&data, free_port(), db.url(), &s3, log));
    }
    let lb = Haproxy::start(&replicas.iter().map(Replica::addr).collect::<Vec<_>>()).unwrap();
    let cert = data.join("tls/server.crt");
    let app = TestApp::client(lb.addr, &cert);
    let first = TestApp::client(replicas[0].addr(), &cert);
    let events = listen(&first);

    // Ten aloft daemons and two real Mender clients, all through the load balancer.
    let server = FakeServer {
        addr: lb.addr,
        cert: cert.clone(),
    };
    let mut daemons = Vec::new();
    for i in 0..10 {
        let mut d = SimDaemon::create_for(
            &server,
            &work.path().join(format!("dev{i}")),
            "sim-board",
            "allow_plain_http = true",
        );
        d.start();
        daemons.push(d);
    }
    let menders: Vec<_> = (1..=2)
        .map(|i| {
            start_mender_with(
                &app,
                &work.path().join(format!("mender{i}")),
                &format!("02:00:00:00:0c:0{i}"),
                Some(&work.path().join("installed")),
            )
        })
        .collect();
    let mut ids: Vec<String> = daemons.iter().map(|d| accept(&app, &d.mac())).collect();
    for i in 1..=2 {
        ids.push(accept(&app, &format!("02:00:00:00:0c:0{i}")));
    }

    // One release: a root filesystem for the daemons' board, a file for the Mender clients.
    let rootfs = rootfs_artifact(work.path(), "release-2", "sim-board", 2 << 20);
    app.upload_ok(&rootfs);
    let dest = work.path().join("installed");
    std::fs::create_dir_all(&dest).unwrap();
    let file = mender_single_file(work.path(), "release-2", "test-device", &dest, b"two");
    app.upload_ok(&file);
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let d = app.deploy("through a kill", "release-2", &refs);

    // Once devices are under way, replica 2 dies and comes back.
    wait_for(120, "devices under way", || {
        let v = deployment(&app, &d);
        let pending = v["statistics"]["status"]["pending"].as_u64()?;
        (pending <= 8).then_some(())
    });
    replicas[1].kill();
    std::thread::sleep(Duration::from_secs(2));
    replicas[1].spawn();

    let done = wait_for(240, "the deployment to finish", || {
        let v = deployment(&app, &d);
        (v["status"] == "finished").then_some(v)
    });
    assert_eq!(
        done["statistics"]["status"]["success"],
        12,
        "{done}\n{}",
        failure_logs(&app, &d)
    );
    assert_eq!(done["summary"]["outcome"], "succeeded", "{done}");

    // A listener on replica 1 saw every device succeed, whichever replica heard it.
    let mut left: std::collections::BTreeSet<String> = ids.iter().cloned().collect();
    while !left.is_empty() {
        let e = expect_event(&events, "device_deployment", |e| e["status"] == "success");
        left.remove(e["device_id"].as_str().unwrap_or_default());
    }
    // The artifact bytes came from S3, never through the replicas (whose logs show the
    // devices' polls).
    let logs: String = replicas
        .iter()
        .map(|r| std::fs::read_to_string(&r.log).unwrap_or_default())
        .collect();
    assert!(
        logs.contains("deployments/next"),
        "the replicas log requests"
    );
    assert!(!logs.contains("/download"), "a replica served an artifact");
    for m in &menders {
        assert_eq!(
            std::fs::read(m.root.join("installed/payload.txt")).unwrap(),
            b"two",
            "what {} installed",
            m.root.display()
        );
    }
    drop(menders);
}
