//! The web UI in real headless Chromium (Debian `chromium` + `chromedriver`, driven over the
//! W3C `WebDriver` protocol): log in, accept pending devices, upload an artifact through the
//! form, create a deployment, watch the per-device statuses turn to success and failure live
//! (no reload), open the failed device's log; plan a phased rollout, advance it, see its
//! automatic pause and reason, resume it, engage the fleet-wide halt. A screenshot of each page goes to
//! `target/ui-screenshots/`; the browser console must stay free of errors.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::common::{TestApp, wait_for};
use crate::daemon::{SimDaemon, bin, rootfs_artifact};

struct Browser {
    driver: Child,
    base: String,
    session: String,
    agent: ureq::Agent,
    shots: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self
            .agent
            .delete(format!("{}/session/{}", self.base, self.session))
            .call();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    fn start(shots: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (Debian package chromium-driver)");
        let base = format!("http://127.0.0.1:{port}");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        wait_for(20, "chromedriver", || {
            agent.get(format!("{base}/status")).call().ok().map(drop)
        });
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"]
            }
        }}});
        let mut r = agent
            .post(format!("{base}/session"))
            .send_json(&caps)
            .unwrap();
        let v: Value = r.body_mut().read_json().unwrap();
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_owned();
        std::fs::create_dir_all(shots).unwrap();
        Self {
            driver,
            base,
            session,
            agent,
            shots: shots.to_owned(),
        }
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut r = match (method, body) {
            ("GET", _) => self.agent.get(&url).call().unwrap(),
            (_, b) => self
                .agent
                .post(&url)
                .send_json(b.unwrap_or_else(|| json!({})))
                .unwrap(),
        };
        let v: Value = r.body_mut().read_json().unwrap();
        v["value"].clone()
    }

    fn go(&self, url: &str) {
        let v = self.cmd("POST", "/url", Some(json!({"url": url})));
        assert!(v.is_null(), "navigating to {url}: {v}");
    }

    fn js(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    fn find(&self, css: &str) -> String {
        let css = css.to_owned();
        let mut last = Value::Null;
        for _ in 0..150 {
            last = self.cmd(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            );
            if let Some(id) = last["element-6066-11e4-a52e-4f735466cecf"].as_str() {
                return id.to_owned();
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let page = self.js("return document.documentElement.outerHTML.slice(0, 3000);");
        panic!("no element {css}: {last}\n{page}");
    }

    fn click(&self, css: &str) {
        let id = self.find(css);
        self.cmd("POST", &format!("/element/{id}/click"), None);
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.cmd(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({"text": text})),
        );
    }

    fn text(&self, css: &str) -> String {
        let id = self.find(css);
        self.cmd("GET", &format!("/element/{id}/text"), None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn wait_text(&self, css: &str, needle: &str, secs: u64) {
        if let Err(text) = self.try_wait_text(css, needle, secs) {
            panic!("{needle:?} never appeared in {css}; it holds {text:?}");
        }
    }

    /// Waits for `needle` in `css`; `Err` with what it holds after `secs`.
    fn try_wait_text(&self, css: &str, needle: &str, secs: u64) -> Result<(), String> {
        let script =
            format!("const e = document.querySelector({css:?}); return e ? e.textContent : '';");
        let mut text = String::new();
        for _ in 0..secs * 5 {
            self.js(&script)
                .as_str()
                .unwrap_or_default()
                .clone_into(&mut text);
            if text.contains(needle) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(text)
    }

    fn screenshot(&self, name: &str) {
        let png = self.cmd("GET", "/screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), bytes).unwrap();
    }

    /// Console entries at SEVERE level since the last call.
    fn console_errors(&self) -> Vec<Value> {
        let v = self.cmd("POST", "/se/log", Some(json!({"type": "browser"})));
        v.as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e["level"] == "SEVERE")
            .collect()
    }
}

#[test]
fn web_ui_admits_uploads_deploys_and_shows_live_progress() {
    if Command::new("chromedriver")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!(
            "chromedriver is missing: apt-get install chromium chromium-driver (scripts/test.sh does)"
        );
    }
    let app = TestApp::start();
    let work = tempfile::tempdir().unwrap();
    let mut good = SimDaemon::create(&app, &work.path().join("good"), "sim-board", "");
    let mut bad = SimDaemon::create(&app, &work.path().join("bad"), "sim-board", "");
    // The bad device's new slot will not boot.
    let broken = Command::new(bin("aloftctl"))
        .args(["sim", "break"])
        .arg(&bad.dir)
        .arg("b")
        .status()
        .unwrap();
    assert!(broken.success());
    good.start();
    bad.start();
    wait_for(60, "two pending devices", || {
        let list = app
            .get("/api/management/v2/devauth/devices?status=pending")
            .expect(200)
            .json();
        (list.as_array()?.len() == 2).then_some(())
    });
    let artifact = rootfs_artifact(work.path(), "release-2", "sim-board", 2 << 20);

    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/ui-screenshots");
    let b = Browser::start(&shots);
    let base = app.base();
    b.go(&format!("{base}/"));
    b.find("#email");
    assert_eq!(
        b.js("return getComputedStyle(document.getElementById('top')).display;"),
        json!("none"),
        "no navigation or Log out on the login page"
    );
    b.screenshot("01-login");
    b.type_into("#email", crate::common::ADMIN);
    b.type_into("#password", "wrong password");
    b.click("button[type=submit]");
    b.wait_text("[role=alert]", "Wrong e-mail or password", 10);
    b.console_errors(); // the refused login is a 401 in the console, on purpose
    let id = b.find("#password");
    b.cmd("POST", &format!("/element/{id}/clear"), None);
    b.type_into("#password", crate::common::PASSWORD);
    b.click("button[type=submit]");
    b.wait_text("main h1", "Dashboard", 10);
    b.wait_text("#live", "live", 10);
    b.screenshot("02-dashboard");

    // Accept both pending devices.
    b.go(&format!("{base}/ui/#/devices?status=pending"));
    b.wait_text("main h1", "Devices", 10);
    b.screenshot("03-devices-pending");
    for _ in 0..2 {
        b.click("button[data-accept]");
        std::thread::sleep(Duration::from_millis(500));
    }
    wait_for(30, "both devices accepted", || {
        let list = app
            .get("/api/management/v2/devauth/devices?status=accepted")
            .expect(200)
            .json();
        (list.as_array()?.len() == 2).then_some(())
    });
    b.go(&format!("{base}/ui/#/devices?status=accepted"));
    b.wait_text("tbody", "factory-1", 30);
    b.screenshot("04-devices-accepted");
    // Keys are shown in capitals; the search takes them in any case, the group included.
    let accepted = app
        .get("/api/management/v2/devauth/devices?status=accepted")
        .expect(200)
        .json();
    let first = accepted[0]["id"].as_str().unwrap().to_owned();
    app.put(
        &format!("/api/management/v1/inventory/devices/{first}/group"),
        &json!({"group": "lab"}),
    )
    .expect(204);
    b.go(&format!(
        "{base}/ui/#/devices?status=accepted&q=Group%3Dlab"
    ));
    wait_for(10, "the group search", || {
        let rows = b.js("return [...document.querySelectorAll('tr[data-device]')].map(r => r.dataset.device).join(',');");
        (rows.as_str()? == first).then_some(())
    });

    // Upload through the form.
    b.go(&format!("{base}/ui/#/artifacts"));
    b.type_into("#artifact-file", artifact.to_str().unwrap());
    b.type_into("#artifact-description", "uploaded by the browser test");
    b.click("form button[type=submit]");
    b.wait_text("tbody", "release-2", 30);
    b.click("tr[data-artifact] button");
    b.wait_text("tr.details", "rootfs-image", 10);
    b.screenshot("05-artifacts");

    // Create a deployment for all devices; the summary counts them first.
    b.go(&format!("{base}/ui/#/deployments"));
    b.wait_text("#deployment-summary", "2 devices", 10);
    b.type_into("#deployment-name", "browser rollout");
    b.click("#deployment-create");
    b.wait_text("tbody", "browser rollout", 10);
    b.screenshot("06-deployments");
    // The list redraws once more after the creation (its own reload, and the live event of
    // the new deployment): a click on a row that was just replaced is lost, so click again.
    let opened = (0..5).any(|_| {
        if b.js("return location.hash;").as_str() == Some("#/deployments") {
            b.click("tr[data-deployment] a");
        }
        b.try_wait_text("main h1", "browser rollout", 4).is_ok()
    });
    assert!(opened, "the deployment's page did not open from the list");
    b.js("window.__stillThisPage = true; return 1;");

    // Live: both rows reach their final status without a reload. On a timeout, say whether
    // the server or the page was behind.
    let page_statuses = || {
        b.js("return [...document.querySelectorAll('#deployment-devices td.status')].map(e => e.textContent).sort().join(',');")
    };
    let live = (0..900).any(|_| {
        if page_statuses().as_str() == Some("failure,success") {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
        false
    });
    if !live {
        let id = b.js("return location.hash.split('/')[2];");
        let server = app
            .get(&format!(
                "/api/management/v1/deployments/deployments/{}/devices",
                id.as_str().unwrap_or_default()
            ))
            .text();
        panic!(
            "the page shows {} after 180 s; the server says {server}; daemons:\n{}\n{}",
            page_statuses(),
            good.log_tail(),
            bad.log_tail()
        );
    }
    assert_eq!(
        b.js("return window.__stillThisPage === true;"),
        json!(true),
        "the page was not reloaded"
    );
    b.wait_text("#deployment-stats", "success", 10);
    // One device failed: the finished deployment says so, it is not a green "finished".
    b.wait_text("#deployment-status", "failed", 10);
    b.screenshot("07-deployment-live");
    b.click("button[data-log]");
    b.wait_text("#device-log", "did not boot", 20);
    assert!(b.text("#device-log").contains("release-2"));
    b.screenshot("08-failed-device-log");

    // The list updates live too: a deployment the server decides (the good device already
    // runs release-2) turns "succeeded" without a reload.
    b.go(&format!("{base}/ui/#/deployments"));
    b.wait_text("tbody", "browser rollout", 10);
    assert_eq!(b.text("tr[data-deployment] td.status"), "failed");
    let good_id = app
        .get("/api/management/v1/deployments/deployments")
        .expect(200)
        .json();
    let rollout = good_id[0]["id"].as_str().unwrap().to_owned();
    let devices = app
        .get(&format!(
            "/api/management/v1/deployments/deployments/{rollout}/devices"
        ))
        .expect(200)
        .json();
    let good_device = devices
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["status"] == "success")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let again = app.deploy("again", "release-2", &[&good_device]);
    wait_for(60, "the list's live verdict", || {
        let v = b.js(&format!("const r = document.querySelector('tr[data-deployment=\"{again}\"] td.status'); return r ? r.textContent : '';"));
        (v.as_str()? == "succeeded").then_some(())
    });

    // A device page with inventory and history.
    b.go(&format!("{base}/ui/#/devices"));
    b.wait_text("main h1", "Devices", 10);
    b.click("tr[data-device] a");
    b.wait_text("main", "Deployment history", 10);
    b.wait_text("main", "browser rollout", 10);
    b.screenshot("09-device");
    // Its static group is set on its page (a bad name is refused with the server's reason) and
    // shown in the device list.
    let hash = b.js("return location.hash;");
    let shown_id = hash
        .as_str()
        .unwrap()
        .trim_start_matches("#/devices/")
        .to_owned();
    b.type_into("#group-name", "no spaces");
    b.click("#group-save");
    b.wait_text("#device-group .error", "invalid group name", 10);
    // The refused name is a 400 in the console, on purpose; nothing else is.
    let refused = b.console_errors();
    assert!(
        refused.iter().all(|e| e["message"]
            .as_str()
            .unwrap_or_default()
            .contains("/group - ")),
        "{refused:?}"
    );
    let field = b.find("#group-name");
    b.cmd("POST", &format!("/element/{field}/clear"), None);
    b.type_into("#group-name", "site-7");
    b.click("#group-save");
    wait_for(10, "the group set from the device page", || {
        let g = app.get(&format!(
            "/api/management/v1/inventory/devices/{shown_id}/group"
        ));
        (g.json()["group"] == "site-7").then_some(())
    });
    b.go(&format!("{base}/ui/#/devices"));
    b.wait_text(
        &format!("tr[data-device=\"{shown_id}\"] td.group"),
        "site-7",
        10,
    );
    // Phone width: the same pages still fit.
    b.cmd(
        "POST",
        "/window/rect",
        Some(json!({"width": 390, "height": 844})),
    );
    b.go(&format!("{base}/ui/#/deployments"));
    b.wait_text("main h1", "Deployments", 10);
    let overflow = b.js("return document.documentElement.scrollWidth <= window.innerWidth + 1;");
    assert_eq!(
        overflow,
        json!(true),
        "the deployments page fits a phone's width"
    );
    b.screenshot("10-deployments-phone");
    let errors = b.console_errors();
    assert!(errors.is_empty(), "console errors: {errors:?}");
    for name in [
        "01-login",
        "02-dashboard",
        "05-artifacts",
        "07-deployment-live",
        "09-device",
    ] {
        assert!(shots.join(format!("{name}.png")).metadata().unwrap().len() > 1000);
    }
}

/// Logs in as the admin (the right password at once).
fn log_in(b: &Browser, base: &str) {
    b.go(&format!("{base}/"));
    b.type_into("#email", crate::common::ADMIN);
    b.type_into("#password", crate::common::PASSWORD);
    b.click("button[type=submit]");
    b.wait_text("main h1", "Dashboard", 10);
    b.wait_text("#live", "live", 10);
}

#[test]
fn web_ui_plans_a_phased_rollout_advances_it_shows_its_automatic_pause_and_resumes() {
    let app = TestApp::start();
    let work = tempfile::tempdir().unwrap();
    let mut daemons: Vec<SimDaemon> = (0..4)
        .map(|i| {
            let mut d =
                SimDaemon::create(&app, &work.path().join(format!("d{i}")), "sim-board", "");
            d.start();
            d
        })
        .collect();
    let ids: Vec<String> = daemons
        .iter()
        .map(|d| crate::daemon::accept(&app, &d.mac()))
        .collect();
    app.upload_ok(&rootfs_artifact(
        work.path(),
        "release-2",
        "sim-board",
        1 << 20,
    ));
    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/ui-screenshots");
    let b = Browser::start(&shots);
    let base = app.base();
    log_in(&b, &base);

    // A dynamic group defined on the devices page (a bad name refused with the server's
    // reason) lists the devices it matches, and is offered as a deployment target, planned
    // like any other (not created: the phased rollout below takes these devices).
    wait_for(60, "every device's inventory", || {
        let r = app.post(
            "/api/management/v2/inventory/filters/search",
            &json!({"filters": [{"scope": "inventory", "attribute": "device_type", "type": "$eq", "value": "sim-board"}]}),
        );
        (r.header("x-total-count") == Some("4")).then_some(())
    });
    b.go(&format!("{base}/ui/#/devices"));
    b.type_into("#dyn-name", "no spaces");
    b.type_into("#dyn-attribute", "device_type");
    b.type_into("#dyn-value", "sim-board");
    b.click("#dyn-define");
    b.wait_text("#dyn-form .error", "name must have", 10);
    assert_eq!(b.console_errors().len(), 1, "the refused definition");
    b.js("document.querySelector('#dyn-name').value = ''; return 0;");
    b.type_into("#dyn-name", "boards");
    // Two terms, both must hold: "And" keeps the first, the fields take the second.
    b.click("#dyn-and");
    b.wait_text("#dyn-terms", "inventory/device_type = sim-board and", 10);
    b.type_into("#dyn-attribute", "artifact_name");
    b.js("document.querySelector('#dyn-op').value = '$ne'; return 0;");
    b.type_into("#dyn-value", "never-built");
    b.click("#dyn-define");
    b.wait_text(
        "#dynamic-groups tr[data-filter=\"boards\"] td.count",
        "4",
        10,
    );
    b.wait_text(
        "#dynamic-groups tr[data-filter=\"boards\"]",
        "inventory/device_type = sim-board and inventory/artifact_name ≠ never-built",
        10,
    );
    b.screenshot("10a-dynamic-groups");
    // Its toast would take the clicks below while it shows.
    wait_for(10, "the toast to go", || {
        (b.js("return document.getElementById('toast').children.length;") == json!(0)).then_some(())
    });
    b.go(&format!("{base}/ui/#/deployments"));
    b.wait_text("#deployment-summary", "4 devices", 10);
    let chosen = b.js("const t = document.querySelector('#deployment-target'); const o = [...t.options].find(o => o.value.startsWith('dyn:')); t.value = o.value; t.dispatchEvent(new Event('change')); return o.textContent;");
    assert!(
        chosen.as_str().unwrap().contains("Dynamic group boards"),
        "{chosen}"
    );
    b.click("#deployment-plan");
    b.wait_text("#plan-totals", "4 devices: 4 would update", 10);
    // At most 3 of them: the plan leaves the last to match out.
    b.type_into("#deployment-max", "3");
    b.click("#deployment-plan");
    b.wait_text("#plan-totals", "4 devices: 3 would update", 10);
    b.js("document.querySelector('#deployment-max').value = ''; const t = document.querySelector('#deployment-target'); t.value = 'all'; t.dispatchEvent(new Event('change')); return 0;");

    // Plan first: one canary, one more, then the rest; advanced by hand, paused on any failure.
    b.wait_text("#deployment-summary", "4 devices", 10);
    b.type_into("#deployment-name", "phased in the browser");
    b.type_into("#deployment-phases", "1, 1, rest");
    b.type_into("#deployment-failure", "0");
    b.type_into("#deployment-health", "50");
    b.click("#deployment-plan");
    b.wait_text("#plan-totals", "4 devices: 4 would update", 10);
    let phases = b.js("return [...document.querySelectorAll('#plan-phases tbody tr')].map(r => r.children[1].textContent).join(',');");
    assert_eq!(phases, json!("1,1,2"), "devices per phase in the plan");
    b.screenshot("11-rollout-plan");
    b.click("#deployment-create");
    open_newest(&b, "phased in the browser");
    b.wait_text("#rollout-phase", "Phase 1 of 3", 10);
    let d = app
        .get("/api/management/v1/deployments/deployments")
        .expect(200)
        .json()[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The canary succeeds; the device of phase 2 will not boot its new slot.
    let devices = app
        .get(&format!(
            "/api/management/v1/deployments/deployments/{d}/devices"
        ))
        .expect(200)
        .json();
    let later = devices
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["phase"] == 2)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let i = ids.iter().position(|id| *id == later).unwrap();
    let broken = Command::new(bin("aloftctl"))
        .args(["sim", "break"])
        .arg(&daemons[i].dir)
        .arg("b")
        .status()
        .unwrap();
    assert!(broken.success());
    // A phase's cell as the page shows it (columns: phase, open, devices, succeeded, failed).
    let cell = |phase: u32, col: usize| {
        b.js(&format!("const r = document.querySelector('#rollout-phases tr[data-phase=\"{phase}\"]'); return r ? r.children[{col}].textContent : '';"))
    };
    wait_for(120, "the canary's success on the page", || {
        (cell(1, 3).as_str()? == "1").then_some(())
    });
    assert_eq!(
        cell(2, 1),
        json!("not yet"),
        "phase 2 waits for its advance"
    );
    b.screenshot("12-rollout-canary");

    // Advanced by hand: phase 2 runs, its failure pauses the rollout, the page says why.
    b.click("#rollout-advance");
    b.wait_text("#rollout-phase", "Phase 2 of 3", 10);
    if let Err(shown) = b.try_wait_text(
        "#rollout-paused",
        "Paused: phase 2: 1 of 1 devices failed (100%), above the failure threshold of 0%",
        180,
    ) {
        let server = app
            .get(&format!("/api/management/v1/deployments/deployments/{d}"))
            .text();
        let page = b.js("return document.getElementById('rollout').textContent;");
        panic!("the page shows {shown:?} / {page}; the server says {server}");
    }
    assert_eq!(cell(3, 1), json!("not yet"));
    // The health comparison, drawn: every device healthy on both sides so far.
    b.wait_text("#health-now", "the gate stops above the dashed line", 60);
    let lines = b.js("return document.querySelectorAll('#health-chart polyline').length;");
    assert_eq!(lines, json!(3), "updated, not yet updated, and the limit");
    b.screenshot("13-rollout-paused");
    // Resumed and advanced: the last phase takes it.
    b.click("#rollout-resume");
    b.find("#rollout-running");
    b.click("#rollout-advance");
    b.wait_text("#rollout-phase", "Phase 3 of 3", 10);
    wait_for(120, "the rollout to finish", || {
        let v = app
            .get(&format!("/api/management/v1/deployments/deployments/{d}"))
            .expect(200)
            .json();
        (v["status"] == "finished").then_some(())
    });
    b.wait_text("#deployment-status", "failed", 20);
    assert_eq!(cell(3, 3), json!("2"), "both of phase 3 succeeded");
    b.screenshot("14-rollout-finished");

    // The fleet-wide halt, engaged and released from the deployments page.
    b.go(&format!("{base}/ui/#/deployments"));
    b.click("#halt-toggle");
    b.wait_text("#halt-status", "Every deployment is held", 10);
    let h = app
        .get("/api/management/v1/deployments/halt")
        .expect(200)
        .json();
    assert_eq!(h["halted"], true, "{h}");
    b.screenshot("15-fleet-halt");
    b.click("#halt-toggle");
    b.wait_text("#halt-status", "Not engaged", 10);

    // Download-only from the form: every device downloads and verifies, then waits; the page
    // says why; Release lets them install.
    app.upload_ok(&rootfs_artifact(
        work.path(),
        "release-3",
        "sim-board",
        1 << 20,
    ));
    b.go(&format!("{base}/ui/#/artifacts"));
    b.wait_text("main", "release-3", 10);
    b.go(&format!("{base}/ui/#/deployments"));
    b.wait_text("#deployment-summary", "4 devices", 10);
    b.js("for (const [id, v] of [['#deployment-artifact', 'release-3'], ['#deployment-install', 'download-only']]) { const s = document.querySelector(id); s.value = v; s.dispatchEvent(new Event('change')); } return 0;");
    b.type_into("#deployment-name", "staged in the browser");
    b.click("#deployment-create");
    open_newest(&b, "staged in the browser");
    b.wait_text("#rollout-install", "Download-only", 10);
    b.wait_text(
        "#rollout-held",
        "Installs held: download-only: waiting for the operator's release",
        10,
    );
    let staged = app
        .get("/api/management/v1/deployments/deployments")
        .expect(200)
        .json()[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_for(120, "every device to download and wait", || {
        let waiting = crate::rollouts::statuses(&app, &staged)
            .values()
            .filter(|s| *s == "pause_before_installing")
            .count();
        (waiting == 4).then_some(())
    });
    b.screenshot("16-download-only-held");
    b.click("#rollout-release");
    b.wait_text("#rollout-install", "Released", 10);
    wait_for(180, "the released installs to finish", || {
        let dep = app
            .get(&format!(
                "/api/management/v1/deployments/deployments/{staged}"
            ))
            .expect(200)
            .json();
        (dep["status"] == "finished").then_some(())
    });
    let done = crate::rollouts::statuses(&app, &staged);
    assert_eq!(
        done.values().filter(|s| *s == "success").count(),
        3,
        "all but the device whose slot B is broken: {done:?}"
    );
    b.wait_text("#deployment-status", "failed", 20);
    assert_eq!(
        b.js("return document.querySelector('#rollout-held') === null;"),
        json!(true),
        "nothing holds a finished deployment"
    );
    b.screenshot("17-download-only-released");
    let errors = b.console_errors();
    assert!(errors.is_empty(), "console errors: {errors:?}");
    for dev in &mut daemons {
        dev.kill();
    }
}

/// Opens the newest deployment's page from the list (the list may still be drawing).
fn open_newest(b: &Browser, name: &str) {
    if let Err(e) = b.try_wait_text("tbody", name, 10) {
        let form = b.js("return [...document.querySelectorAll('form .error')].map(e => e.textContent).join(' | ');");
        panic!("{e}; the form says {form}");
    }
    let opened = (0..5).any(|_| {
        if b.js("return location.hash;").as_str() == Some("#/deployments") {
            b.click("tr[data-deployment] a");
        }
        b.try_wait_text("main h1", name, 4).is_ok()
    });
    assert!(opened, "the deployment's page did not open from the list");
}
