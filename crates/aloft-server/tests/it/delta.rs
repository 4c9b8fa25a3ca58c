//! Delta updates end to end: the server makes the delta from the release its devices run,
//! hands a device the delta its provides and modules allow (the full artifact to a device on an unknown version), the aloft daemon resumes a
//! cut delta download, applies it from the running slot, and falls back to the full artifact
//! by itself when the running slot is not what the delta was made from.

use std::path::{Path, PathBuf};
use std::process::Command;

use aloft_testkit::images::{copy_tree, ext4, library_tree, noise};

use crate::common::{TestApp, wait_for};
use crate::daemon::{SimDaemon, accept, bin, final_status, inventory};

fn sha(b: &[u8]) -> String {
    aloft_testkit::sha256_hex(b)
}

/// A release: an ext4 image of a tree of libraries, and its rootfs-image artifact.
fn release(work: &Path, name: &str, tree: &Path) -> (PathBuf, Vec<u8>) {
    let image = work.join(format!("{name}.ext4"));
    let bytes = ext4(tree, &image, 8 << 20, 1024);
    let out = work.join(format!("{name}.mender"));
    let st = Command::new(bin("aloftctl"))
        .args(["artifact", "write", "rootfs-image", "--no-progress", "-f"])
        .arg(&image)
        .args(["-n", name, "-t", "sim-board", "-o"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    (out, bytes)
}

fn delta(work: &Path, from: &Path, to: &Path, name: &str) -> PathBuf {
    let out = work.join(format!("{name}.delta.mender"));
    let st = Command::new(bin("aloftctl"))
        .args(["delta", "make", "--no-progress", "--from"])
        .arg(from)
        .arg("--to")
        .arg(to)
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    out
}

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

/// The sizes of the artifacts the daemon downloaded, from its log.
fn downloads(dev: &SimDaemon) -> Vec<u64> {
    dev.log()
        .lines()
        .filter(|l| l.contains("download complete"))
        .filter_map(|l| {
            l.split("size=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

#[test]
fn the_daemon_takes_the_delta_resumes_it_and_falls_back_to_the_full_artifact() {
    let app = TestApp::start();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let t1 = w.join("tree-1");
    library_tree(&t1, 40, 50_000);
    let t2 = w.join("tree-2");
    copy_tree(&t1, &t2);
    std::fs::write(t2.join("usr/lib/new.so"), noise(100, 300_000)).unwrap();
    let t3 = w.join("tree-3");
    copy_tree(&t2, &t3);
    std::fs::write(t3.join("usr/lib/newer.so"), noise(101, 100_000)).unwrap();
    let (r1, b1) = release(w, "release-1", &t1);
    let (r2, _) = release(w, "release-2", &t2);
    let (r3, _) = release(w, "release-3", &t3);
    let d3 = delta(w, &r2, &r3, "release-3");

    let mut dev = SimDaemon::create(
        &app,
        &w.join("dev"),
        "sim-board",
        "download_rate_limit = \"64K\"",
    );
    let mut fresh = SimDaemon::create(&app, &w.join("fresh"), "sim-board", "");
    dev.start();
    let id = accept(&app, &dev.mac());
    app.upload_ok(&r1);
    let first = app.deploy("release-1", "release-1", &[&id]);
    assert_eq!(
        final_status(&app, &first, &id, 180),
        "success",
        "{}",
        dev.log()
    );

    // Release 2: the server makes the delta from release-1 (what the device runs) by itself.
    // The device on release-1 gets the delta, a device on its factory image (an unknown
    // version) the full artifact.
    wait_for(60, "the inventory of release-1", || {
        (inventory(&app, &id, "artifact_name")? == "release-1").then_some(())
    });
    app.upload_ok(&r2);
    let made = wait_for(120, "the server's delta", || {
        let list = app
            .get("/api/management/v1/deployments/artifacts?name=release-2")
            .expect(200)
            .json();
        list.as_array()?
            .iter()
            .find(|a| a["updates"][0]["type_info"]["type"] == "aloft-delta")
            .cloned()
    });
    assert_eq!(
        made["artifact_depends"]["rootfs-image.checksum"],
        sha(&b1),
        "{made}"
    );
    let d2 = made["size"].as_u64().unwrap();
    fresh.start();
    let other = accept(&app, &fresh.mac());
    let second = app.deploy("release-2", "release-2", &[&id, &other]);
    // The delta's download is cut by a kill -9, and resumed.
    wait_for(60, "part of the delta downloaded", || {
        (dev.partial()["offset"].as_u64()? >= 64 << 10).then_some(())
    });
    dev.kill();
    dev.start();
    assert_eq!(
        final_status(&app, &second, &id, 180),
        "success",
        "{}",
        dev.log()
    );
    assert_eq!(
        final_status(&app, &second, &other, 180),
        "success",
        "{}",
        fresh.log()
    );
    assert_eq!(downloads(&dev).last(), Some(&d2), "{}", dev.log());
    assert!(dev.log().contains("resumed_from="), "{}", dev.log());
    assert!(d2 * 4 < size(&r2), "{d2} {}", size(&r2));
    assert_eq!(downloads(&fresh), vec![size(&r2)], "{}", fresh.log());
    assert_eq!(dev.status()["artifact_name"], "release-2");

    // Release 3, but the running slot changed under the device: the delta is refused for
    // that reason and the daemon installs the full artifact in the same deployment.
    let running = dev.dir.join(format!(
        "slot-{}.img",
        dev.status()["booted_slot"].as_str().unwrap()
    ));
    let mut slot = std::fs::read(&running).unwrap();
    // A block of library content (noise): one the delta copies.
    let block = (0..slot.len() / 2)
        .step_by(1024)
        .find(|i| slot[*i..*i + 1024].iter().filter(|x| **x != 0).count() > 1000)
        .unwrap();
    slot[block + 1] ^= 0xff;
    std::fs::write(&running, &slot).unwrap();
    // The delta made with aloftctl first: the server then has it and makes none.
    app.upload_ok(&d3);
    app.upload_ok(&r3);
    let third = app.deploy("release-3", "release-3", &[&id]);
    assert_eq!(
        final_status(&app, &third, &id, 180),
        "success",
        "{}",
        dev.log()
    );
    let log = dev.log();
    assert!(log.contains("source does not match"), "{log}");
    assert!(log.contains("downloading the full artifact"), "{log}");
    assert_eq!(downloads(&dev).last(), Some(&size(&r3)), "{log}");
    assert_eq!(dev.status()["artifact_name"], "release-3");
}
