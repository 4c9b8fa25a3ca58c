//! `aloft-server demo`: a server on a fresh data folder, an admin with a random password,
//! simulated A/B devices each running the real `aloft` daemon (some accepted, some left
//! pending), and sample artifacts uploaded, ready to deploy.
//!
//! The devices are made and run by the `aloftctl` and `aloft` binaries found next to this one
//! (the server never links the device crates); everything else goes through the server's own
//! HTTPS API, as an operator's tools would.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use rand_core::RngCore as _;
use serde_json::Value;

use crate::http::Settings;
use crate::server::{self, Running, ServeOptions};

/// The e-mail of the demo's admin.
pub const ADMIN: &str = "admin@aloft.demo";
/// The device type of the simulated devices.
pub const DEVICE_TYPE: &str = "demo-board";
const MARKER: &str = ".aloft-demo";

/// How to run the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Data folder (made fresh; a folder that is not an earlier demo's is refused).
    pub data_dir: PathBuf,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Number of simulated devices.
    pub devices: usize,
    /// How many of them are left pending for the user to accept.
    pub pending: usize,
    /// Seconds between the devices' update checks.
    pub poll_seconds: u64,
    /// Each device's download speed limit (`"150K"`: a phase takes about a minute).
    pub download_rate: Option<String>,
    /// Start a phased rollout of the root filesystem at once (with a device that fails).
    pub rollout: Option<DemoRollout>,
}

/// The rollout the demo starts: a canary phase, a quarter, the rest; advanced once a phase
/// succeeded for the soak; paused by the failure of a device broken on purpose in phase 2.
#[derive(Debug, Clone, Copy)]
pub struct DemoRollout {
    /// Seconds a phase's success must hold before the next opens.
    pub soak_seconds: u64,
}

/// A running demo.
pub struct Demo {
    running: Running,
    children: Vec<Child>,
    /// The URL of the server.
    pub url: String,
    /// The admin's password.
    pub password: String,
    /// The server's certificate.
    pub cert: PathBuf,
    /// Names of the uploaded artifacts.
    pub artifacts: Vec<String>,
    /// Devices accepted, devices pending.
    pub accepted: usize,
    /// The rollout started, in words, when one was.
    pub rollout: Option<String>,
}

fn random_password() -> String {
    let mut bytes = [0u8; 12];
    rand_core::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let path = exe.with_file_name(name);
    if !path.exists() {
        bail!(
            "{} is missing: build it beside aloft-server (cargo build --release -p aloft-client -p aloftctl -p aloft-server)",
            path.display()
        );
    }
    Ok(path)
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Makes the data folder fresh: an earlier demo's is emptied, anything else is refused.
fn fresh_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir)?.next().is_none();
        if !empty && !dir.join(MARKER).exists() {
            bail!(
                "{} holds something that is not an earlier demo; choose another --data-dir",
                dir.display()
            );
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot empty {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join(MARKER),
        b"made by aloft-server demo; emptied by the next one\n",
    )?;
    Ok(())
}

/// A blocking HTTPS client of the demo server.
struct Client {
    agent: ureq::Agent,
    base: String,
    token: String,
}

impl Client {
    fn new(base: &str, cert: &Path, password: &str) -> anyhow::Result<Self> {
        let pem = std::fs::read(cert)?;
        let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
            .filter_map(|i| match i {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::Specific(Arc::new(certs)))
            .build();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{ADMIN}:{password}"));
        let token = agent
            .post(&format!("{base}/api/management/v1/useradm/auth/login"))
            .header("Authorization", &format!("Basic {basic}"))
            .send_empty()?
            .body_mut()
            .read_to_string()?;
        Ok(Self {
            agent,
            base: base.to_owned(),
            token,
        })
    }

    fn get(&self, path: &str) -> anyhow::Result<Value> {
        let text = self
            .agent
            .get(&format!("{}{path}", self.base))
            .header("Authorization", &format!("Bearer {}", self.token))
            .call()?
            .body_mut()
            .read_to_string()?;
        Ok(serde_json::from_str(&text)?)
    }

    fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let text = self
            .agent
            .post(&format!("{}{path}", self.base))
            .header("Authorization", &format!("Bearer {}", self.token))
            .send_json(body)?
            .body_mut()
            .read_to_string()?;
        Ok(if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)?
        })
    }

    fn accept(&self, device: &str, auth_set: &str) -> anyhow::Result<()> {
        self.agent
            .put(&format!(
                "{}/api/management/v2/devauth/devices/{device}/auth/{auth_set}/status",
                self.base
            ))
            .header("Authorization", &format!("Bearer {}", self.token))
            .send_json(serde_json::json!({"status": "accepted"}))?;
        Ok(())
    }

    fn upload(&self, file: &Path, description: &str) -> anyhow::Result<()> {
        let boundary = "aloft-demo-upload-boundary";
        let mut body = Vec::new();
        write!(
            body,
            "--{boundary}\r\nContent-Disposition: form-data; name=\"description\"\r\n\r\n{description}\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"artifact\"; filename=\"a.mender\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )?;
        body.extend_from_slice(&std::fs::read(file)?);
        write!(body, "\r\n--{boundary}--\r\n")?;
        self.agent
            .post(&format!(
                "{}/api/management/v1/deployments/artifacts",
                self.base
            ))
            .header("Authorization", &format!("Bearer {}", self.token))
            .header(
                "Content-Type",
                &format!("multipart/form-data; boundary={boundary}"),
            )
            .send(&body[..])
            .with_context(|| format!("uploading {}", file.display()))?;
        Ok(())
    }
}

/// The demo's Update Module: copies the payload files into the device folder's `app/`.
const DEMO_MODULE: &str = "#!/bin/sh\n\
# The aloft demo's Update Module: installs the payload files into the device's app/ folder.\n\
set -e\n\
tree=\"$2\"\n\
case \"$1\" in\n\
  ArtifactInstall) dest=\"$tree/../../../../../../app\"; mkdir -p \"$dest\"; cp \"$tree\"/files/* \"$dest\"/ ;;\n\
  NeedsArtifactReboot) echo No ;;\n\
  SupportsRollback) echo No ;;\n\
esac\n";

fn make_artifacts(ctl: &Path, dir: &Path) -> anyhow::Result<Vec<(PathBuf, String, String)>> {
    std::fs::create_dir_all(dir)?;
    let image = dir.join("demo-rootfs-2.img");
    // Incompressible, so that a paced download takes its time (xorshift noise).
    let mut data = b"aloft demo root filesystem, release 2\n".to_vec();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    data.extend((0..(8usize << 20) - data.len()).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x.to_le_bytes()[0]
    }));
    std::fs::write(&image, &data)?;
    let rootfs = dir.join("demo-rootfs-2.mender");
    run(Command::new(ctl)
        .args(["artifact", "write", "rootfs-image", "--no-progress", "-f"])
        .arg(&image)
        .args(["-n", "demo-rootfs-2", "-t", DEVICE_TYPE, "-o"])
        .arg(&rootfs))?;
    let conf = dir.join("app.conf");
    std::fs::write(
        &conf,
        "# demo application settings, version 2\ngreeting = \"hello from aloft\"\n",
    )?;
    let app = dir.join("demo-app-2.mender");
    run(Command::new(ctl)
        .args([
            "artifact",
            "write",
            "module-image",
            "--no-progress",
            "-T",
            "demo-app",
            "-f",
        ])
        .arg(&conf)
        .args(["-n", "demo-app-2", "-t", DEVICE_TYPE, "-o"])
        .arg(&app))?;
    Ok(vec![
        (
            rootfs,
            "demo-rootfs-2".into(),
            "Root filesystem v1 → v2 (A/B slots, reboot, health check, commit)".into(),
        ),
        (
            app,
            "demo-app-2".into(),
            "Application file update (Update Module demo-app, no reboot)".into(),
        ),
    ])
}

fn make_device(
    ctl: &Path,
    aloft: &Path,
    dir: &Path,
    url: &str,
    cert: &Path,
    poll: u64,
    rate: Option<&str>,
) -> anyhow::Result<Child> {
    run(Command::new(ctl)
        .args(["sim", "create"])
        .arg(dir)
        .args([
            "--device-type",
            DEVICE_TYPE,
            "--artifact-name",
            "demo-rootfs-1",
        ])
        .args(["--slot-size", "16M", "--server", url, "--server-cert"])
        .arg(cert)
        .args(["--poll-seconds", &poll.to_string()]))?;
    let toml_path = dir.join("aloft.toml");
    let toml = std::fs::read_to_string(&toml_path)?;
    // `[daemon]` is the file's last table: the limit lands in it.
    let limit = rate.map_or(String::new(), |r| format!("download_rate_limit = {r:?}\n"));
    std::fs::write(
        &toml_path,
        format!("modules_dir = \"modules\"\n{toml}{limit}"),
    )?;
    std::fs::create_dir_all(dir.join("modules"))?;
    let module = dir.join("modules/demo-app");
    std::fs::write(&module, DEMO_MODULE)?;
    std::fs::set_permissions(&module, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let log = std::fs::File::create(dir.join("daemon.log"))?;
    Command::new(aloft)
        .arg("--config")
        .arg(&toml_path)
        .arg("daemon")
        .env("ALOFT_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", aloft.display()))
}

impl Demo {
    /// Starts everything; returns once the devices are registered and the artifacts uploaded.
    pub async fn start(opts: DemoOptions) -> anyhow::Result<Self> {
        let ctl = sibling("aloftctl")?;
        let aloft = sibling("aloft")?;
        fresh_dir(&opts.data_dir)?;
        let server_dir = opts.data_dir.join("server");
        let password = random_password();
        let store = server::open_store(&server_dir).await?;
        crate::http::useradm::create_user_row(&store, ADMIN, &password)
            .await
            .map_err(|e| anyhow::anyhow!("cannot create the demo admin: {}", e.message))?;
        drop(store);
        let running = server::start(
            ServeOptions {
                data_dir: server_dir,
                listen: opts.listen,
                public_url: None,
                tls_cert: None,
                tls_key: None,
                database_url: None,
            },
            Settings::default(),
        )
        .await?;
        let url = format!("https://127.0.0.1:{}", running.addr.port());
        let cert = running.cert.clone();
        let (url2, cert2, password2) = (url.clone(), cert.clone(), password.clone());
        let data = opts.data_dir.clone();
        let prepared = tokio::task::spawn_blocking(move || {
            prepare(&opts, &ctl, &aloft, &data, &url2, &cert2, &password2)
        })
        .await?;
        match prepared {
            Ok((children, artifacts, accepted, rollout)) => Ok(Self {
                running,
                children,
                url,
                password,
                cert,
                artifacts,
                accepted,
                rollout,
            }),
            Err(e) => {
                let _ = running.shutdown().await;
                Err(e)
            }
        }
    }

    /// Stops the devices, then the server.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.running.shutdown().await
    }
}

type Prepared = (Vec<Child>, Vec<String>, usize, Option<String>);

fn prepare(
    opts: &DemoOptions,
    ctl: &Path,
    aloft: &Path,
    data: &Path,
    url: &str,
    cert: &Path,
    password: &str,
) -> anyhow::Result<Prepared> {
    let client = Client::new(url, cert, password)?;
    let mut artifacts = Vec::new();
    for (file, name, description) in make_artifacts(ctl, &data.join("artifacts"))? {
        client.upload(&file, &description)?;
        artifacts.push(name);
    }
    let mut children = Vec::new();
    let made = (1..=opts.devices).try_for_each(|i| {
        let dir = data.join(format!("devices/device-{i:02}"));
        children.push(make_device(
            ctl,
            aloft,
            &dir,
            url,
            cert,
            opts.poll_seconds,
            opts.download_rate.as_deref(),
        )?);
        Ok::<_, anyhow::Error>(())
    });
    let accepted = made.and_then(|()| {
        let n = accept_devices(&client, opts)?;
        let rollout = match opts.rollout {
            Some(r) => Some(start_rollout(&client, ctl, data, r)?),
            None => None,
        };
        Ok((n, rollout))
    });
    match accepted {
        Ok((n, rollout)) => Ok((children, artifacts, n, rollout)),
        Err(e) => {
            for c in &mut children {
                let _ = c.kill();
                let _ = c.wait();
            }
            Err(e)
        }
    }
}

/// Waits for every device's auth request, then accepts all but `pending` of them.
fn accept_devices(client: &Client, opts: &DemoOptions) -> anyhow::Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let pending = loop {
        let list = client.get("/api/management/v2/devauth/devices?status=pending&per_page=500")?;
        let list = list.as_array().cloned().unwrap_or_default();
        if list.len() >= opts.devices {
            break list;
        }
        if Instant::now() > deadline {
            bail!(
                "only {} of {} simulated devices asked to be admitted within 60 s (see DATA/devices/*/daemon.log)",
                list.len(),
                opts.devices
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut pending = pending;
    pending.sort_by_key(|d| d["identity_data"]["mac"].as_str().unwrap_or("").to_owned());
    let to_accept = opts.devices.saturating_sub(opts.pending);
    for d in pending.iter().take(to_accept) {
        let (Some(id), Some(auth)) = (d["id"].as_str(), d["auth_sets"][0]["id"].as_str()) else {
            continue;
        };
        client.accept(id, auth)?;
    }
    Ok(to_accept)
}

/// Plans the demo's rollout of the root filesystem over the accepted devices, breaks the new
/// slot of one device of phase 2 (so that the rollout pauses there, with its reason), and
/// creates it from the plan. Returns what it did, in words.
fn start_rollout(
    client: &Client,
    ctl: &Path,
    data: &Path,
    r: DemoRollout,
) -> anyhow::Result<String> {
    let mut body = serde_json::json!({
        "name": "demo-rootfs-2 in phases",
        "artifact_name": "demo-rootfs-2",
        "all_devices": true,
        "phases": [{"batch_size": 5}, {"batch_size": 25}, {}],
        "rollout": {"advance": "auto", "success_threshold": 100, "soak_seconds": r.soak_seconds,
                    "failure_threshold": 10},
    });
    let plan = client.post("/api/management/v1/deployments/deployments/plan", &body)?;
    let victim = plan["devices"]
        .as_array()
        .and_then(|list| list.iter().find(|d| d["phase"] == 2))
        .and_then(|d| d["id"].as_str())
        .context("the demo's plan has no second phase (give it more devices)")?
        .to_owned();
    let device = client.get(&format!("/api/management/v2/devauth/devices/{victim}"))?;
    let mac = device["identity_data"]["mac"].as_str().unwrap_or_default();
    let dir = std::fs::read_dir(data.join("devices"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|d| {
            std::fs::read_to_string(d.join("identity/mender-device-identity"))
                .is_ok_and(|s| s.contains(&format!("mac={mac}")))
        })
        .with_context(|| format!("no simulated device has the MAC address {mac}"))?;
    run(Command::new(ctl).args(["sim", "break"]).arg(&dir).arg("b"))?;
    body["expect_plan"] = plan["digest"].clone();
    client.post("/api/management/v1/deployments/deployments", &body)?;
    let sizes: Vec<String> = plan["phases"]
        .as_array()
        .map(|p| p.iter().map(|x| x["device_count"].to_string()).collect())
        .unwrap_or_default();
    Ok(format!(
        "demo-rootfs-2 is rolling out in phases of {} devices, each opening once the one before \
         succeeded for {} s; {} (phase 2) will not boot its new slot, so the rollout pauses \
         there and says why",
        sizes.join(", "),
        r.soak_seconds,
        dir.file_name().unwrap_or_default().to_string_lossy()
    ))
}
