//! `aloft-server serve` as an operator starts it: from `--data-dir` alone as before, or from a
//! configuration file whose limits and token lifetimes take effect; a file with an unknown key
//! is refused with a message naming it; what a `kill -9` mid-upload leaves is cleaned up.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use base64::Engine as _;

use crate::common::{ADMIN, PASSWORD, agent_for, multipart, wait_for};

const SERVER: &str = env!("CARGO_BIN_EXE_aloft-server");

struct Serving {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `aloft-server serve ARGS` and waits for its `serving https://ADDR` line.
fn serve(args: &[&str], env: &[(&str, &str)]) -> Serving {
    let mut child = Command::new(SERVER)
        .arg("serve")
        .args(args)
        .envs(env.iter().copied())
        .env_remove("ALOFT_DATA_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    while let Some(Ok(line)) = stderr.next() {
        if let Some(rest) = line.strip_prefix("aloft-server: serving https://") {
            let addr = rest.split_whitespace().next().unwrap().parse().unwrap();
            // Keep reading its log, so that its writes to stderr never fail.
            std::thread::spawn(move || stderr.for_each(drop));
            return Serving { child, addr };
        }
        seen.push(line);
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the server did not start: {seen:?}");
}

fn create_user(data: &Path) {
    let out = Command::new(SERVER)
        .args(["user", "create", "--data-dir"])
        .arg(data)
        .args(["--email", ADMIN, "--password", PASSWORD])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn login(agent: &ureq::Agent, addr: SocketAddr) -> String {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{ADMIN}:{PASSWORD}"));
    let mut r = agent
        .post(format!(
            "https://localhost:{}/api/management/v1/useradm/auth/login",
            addr.port()
        ))
        .header("authorization", format!("Basic {basic}"))
        .send_empty()
        .unwrap();
    assert_eq!(r.status(), 200);
    r.body_mut().read_to_string().unwrap()
}

#[test]
fn serve_with_a_data_dir_alone_still_works() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create_user(&data);
    let s = serve(
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    let agent = agent_for(&data.join("tls/server.crt"));
    assert!(!login(&agent, s.addr).is_empty());
    assert!(data.join("aloft.db").exists() && data.join("blobs").is_dir());
}

#[test]
fn serve_takes_limits_and_lifetimes_from_a_config_file_and_refuses_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "data_dir = \"data\"\nlisten_address = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let out = Command::new(SERVER)
        .args(["serve", "--config"])
        .arg(&bad)
        .env_remove("ALOFT_DATA_DIR")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("unknown field `listen_address`") && err.contains("bad.toml"),
        "{err}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "a refused start makes nothing"
    );

    let good = dir.path().join("server.toml");
    std::fs::write(
        &good,
        "data_dir = \"data\"\nlisten = \"127.0.0.1:0\"\n\
         [limits]\nmax_artifact_bytes = 2048\n\
         [tokens]\nsession_token_secs = 120\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    create_user(&data);
    // The URL secret comes from the environment when it is set there: a short one is refused.
    let out = Command::new(SERVER)
        .args(["serve", "--config"])
        .arg(&good)
        .env_remove("ALOFT_DATA_DIR")
        .env("ALOFT_URL_SECRET", "short")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("the URL secret has 5 bytes"), "{err}");
    let secret = "0123456789abcdef0123456789abcdef-shared";
    let s = serve(
        &["--config", good.to_str().unwrap()],
        &[("ALOFT_URL_SECRET", secret)],
    );
    let agent = agent_for(&data.join("tls/server.crt"));
    let jwt = login(&agent, s.addr);
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(jwt.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        120,
        "{claims}"
    );
    let artifact = crate::daemon::rootfs_artifact(dir.path(), "too-big", "board", 64 << 10);
    let (ctype, body) = multipart(&std::fs::read(artifact).unwrap(), &[]);
    let r = agent
        .post(format!(
            "https://localhost:{}/api/management/v1/deployments/artifacts",
            s.addr.port()
        ))
        .header("authorization", format!("Bearer {jwt}"))
        .header("content-type", ctype)
        .send(&body[..])
        .unwrap();
    assert_eq!(r.status(), 413, "max_artifact_bytes = 2048 holds");
}

/// The files under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// An upload body that sends `head` and then waits for ever (a client cut off by a crash).
struct Stalled(std::io::Cursor<Vec<u8>>);

impl std::io::Read for Stalled {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.0.read(buf)? {
            0 => {
                std::thread::sleep(std::time::Duration::from_secs(30));
                Err(std::io::Error::other("stalled"))
            }
            n => Ok(n),
        }
    }
}

#[test]
fn what_a_kill_9_mid_upload_leaves_is_cleaned_by_the_background_job() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        "data_dir = \"data\"\nlisten = \"127.0.0.1:0\"\n\
         [blobs]\ncleanup_interval_secs = 1\norphan_age_secs = 2\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    create_user(&data);
    let mut s = serve(&["--config", config.to_str().unwrap()], &[]);
    let agent = agent_for(&data.join("tls/server.crt"));
    let jwt = login(&agent, s.addr);
    let kept = crate::daemon::rootfs_artifact(dir.path(), "kept", "board", 64 << 10);
    let (ctype, body) = multipart(&std::fs::read(&kept).unwrap(), &[]);
    let url = format!(
        "https://localhost:{}/api/management/v1/deployments/artifacts",
        s.addr.port()
    );
    let r = agent
        .post(&url)
        .header("authorization", format!("Bearer {jwt}"))
        .header("content-type", &ctype)
        .send(&body[..])
        .unwrap();
    assert_eq!(r.status(), 201);
    let stored = files(&data.join("blobs"));
    assert_eq!(stored.len(), 1, "{stored:?}");

    // An upload in progress, then kill -9.
    let big = crate::daemon::rootfs_artifact(dir.path(), "cut", "board", 4 << 20);
    let (ctype, body) = multipart(&std::fs::read(&big).unwrap(), &[]);
    let head = body[..body.len() / 2].to_vec();
    let (agent2, url2, jwt2) = (agent.clone(), url.clone(), jwt.clone());
    std::thread::spawn(move || {
        let _ = agent2
            .post(&url2)
            .header("authorization", format!("Bearer {jwt2}"))
            .header("content-type", &ctype)
            .send(ureq::SendBody::from_owned_reader(Stalled(
                std::io::Cursor::new(head),
            )));
    });
    let staging = wait_for(30, "the upload's staging file", || {
        files(&data.join("blobs"))
            .into_iter()
            .find(|f| f.contains('#'))
    });
    let _ = s.child.kill();
    let _ = s.child.wait();
    assert!(
        data.join("blobs").join(&staging).exists(),
        "left by the crash"
    );
    // A finished file whose row was never written (a crash between the two).
    let orphan = data.join("blobs/artifacts/0b8d5c2e-8a53-4d6f-9c1e-7a0d1f3b2c4d");
    std::fs::write(&orphan, b"no row").unwrap();

    let _s = serve(&["--config", config.to_str().unwrap()], &[]);
    wait_for(20, "the cleanup", || {
        (files(&data.join("blobs")) == stored).then_some(())
    });
}
