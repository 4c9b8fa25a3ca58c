//! A QEMU test bed: boots a disk image made by `aloftctl image build` with
//! `qemu-system-x86_64` and OVMF, captures the serial console to a file, gives the guest
//! QEMU's user network (the host's loopback is 10.0.2.2 from inside), runs commands in the
//! guest through the test agent of `scripts/vm-rootfs.sh` (virtio-serial port `aloft.test`),
//! and cuts the power with `kill -9`.
//!
//! Power-cut semantics: the raw disk is opened with `cache=writeback`: QEMU keeps no data of its
//! own, so every write the guest issued to its disk is in the host file when QEMU dies with
//! `kill -9`, and what was only in the guest's page cache is lost, as on a machine whose power
//! is pulled (the host's page cache survives a process kill). The EFI variables file is kept
//! across cuts like a board's flash.
//!
//! Software emulation (TCG) unless `ALOFT_VM_ACCEL=kvm`: on these machines `/dev/kvm` exists but
//! guests fail with "KVM internal error".
//!
//! A reboot is a power cycle: QEMU runs with `-no-reboot` and is started again when the guest
//! resets. (Under TCG, Debian's kernel hangs early in a warm reset after a clean shutdown with
//! OVMF; a board's reset is a cold start too.)

use std::io::{BufRead as _, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// OVMF's code (read-only) and the template of its variables.
const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS.fd";

/// The end of a command's output, as the guest agent writes it.
const END: &str = "\u{1e}ALOFT-END rc=";

/// A virtual machine on a disk image.
pub struct Vm {
    dir: PathBuf,
    disk: PathBuf,
    child: Arc<Mutex<Option<Child>>>,
    off: Arc<AtomicBool>,
    boots: Arc<AtomicU32>,
    supervisor: Option<std::thread::JoinHandle<()>>,
    /// Memory in MiB.
    pub memory_mb: u32,
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.power_cut();
    }
}

/// What a command in the guest gave.
#[derive(Debug, Clone)]
pub struct Output {
    /// Its exit code.
    pub code: i32,
    /// Standard output and error, merged.
    pub text: String,
}

impl Vm {
    /// A machine whose files (serial log, EFI variables, agent socket) live in `dir`.
    pub fn new(dir: &Path, disk: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("the VM folder");
        let vars = dir.join("OVMF_VARS.fd");
        if !vars.exists() {
            std::fs::copy(OVMF_VARS, &vars).expect("OVMF (Debian package ovmf) is installed");
        }
        Self {
            dir: dir.to_owned(),
            disk: disk.to_owned(),
            child: Arc::new(Mutex::new(None)),
            off: Arc::new(AtomicBool::new(true)),
            boots: Arc::new(AtomicU32::new(0)),
            supervisor: None,
            memory_mb: 512,
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("agent.sock")
    }

    /// The serial console log (all boots, appended).
    pub fn serial_path(&self) -> PathBuf {
        self.dir.join("serial.log")
    }

    /// The serial console so far.
    pub fn serial(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.serial_path()).unwrap_or_default()).into_owned()
    }

    /// Powers the machine on; a reset of the guest (a reboot, a panic) powers it on again.
    pub fn power_on(&mut self) {
        assert!(self.supervisor.is_none(), "the machine is already on");
        self.off.store(false, Ordering::SeqCst);
        let command = self.command();
        let (child, off, boots) = (self.child.clone(), self.off.clone(), self.boots.clone());
        let serial = self.serial_path();
        let socket = self.socket();
        self.supervisor = Some(std::thread::spawn(move || {
            loop {
                if off.load(Ordering::SeqCst) {
                    return;
                }
                let _ = std::fs::remove_file(&socket);
                let n = boots.fetch_add(1, Ordering::SeqCst) + 1;
                let mut log = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&serial)
                    .unwrap();
                let _ = writeln!(log, "\n===== power on #{n} =====");
                let mut cmd = command();
                let spawned = cmd
                    .stdin(Stdio::null())
                    .stdout(log.try_clone().unwrap())
                    .stderr(log)
                    .spawn()
                    .expect("qemu-system-x86_64 (Debian package qemu-system-x86) is installed");
                *child.lock().unwrap() = Some(spawned);
                // Wait for QEMU to end: a guest reset (or the power cut, which sets `off`).
                loop {
                    std::thread::sleep(Duration::from_millis(100));
                    let mut guard = child.lock().unwrap();
                    if !matches!(guard.as_mut().map(Child::try_wait), Some(Ok(None))) {
                        *guard = None;
                        break;
                    }
                }
            }
        }));
    }

    fn command(&self) -> impl Fn() -> Command + Send + 'static {
        let accel = std::env::var("ALOFT_VM_ACCEL").unwrap_or_else(|_| "tcg".into());
        let memory = self.memory_mb.to_string();
        let vars = self.dir.join("OVMF_VARS.fd");
        let disk = self.disk.clone();
        let socket = self.socket();
        move || {
            let mut c = Command::new("qemu-system-x86_64");
            c.args(["-nodefaults", "-no-reboot", "-accel", &accel])
                .args(["-m", &memory, "-smp", "1"])
                .args(["-display", "none", "-vga", "none", "-monitor", "none"])
                .arg("-drive")
                .arg(format!(
                    "if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"
                ))
                .arg("-drive")
                .arg(format!(
                    "if=pflash,format=raw,unit=1,file={}",
                    vars.display()
                ))
                .arg("-drive")
                .arg(format!(
                    "file={},format=raw,if=virtio,cache=writeback",
                    disk.display()
                ))
                .args([
                    "-netdev",
                    "user,id=n0",
                    "-device",
                    "virtio-net-pci,netdev=n0",
                ])
                .args(["-device", "virtio-serial-pci"])
                .arg("-chardev")
                .arg(format!(
                    "socket,id=agent,path={},server=on,wait=off",
                    socket.display()
                ))
                .args(["-device", "virtserialport,chardev=agent,name=aloft.test"])
                .args(["-serial", "stdio"]);
            c
        }
    }

    /// Cuts the power: `kill -9` of QEMU; the machine stays off.
    pub fn power_cut(&mut self) {
        self.off.store(true, Ordering::SeqCst);
        if let Some(c) = self.child.lock().unwrap().as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(t) = self.supervisor.take() {
            let _ = t.join();
        }
    }

    /// How often QEMU was started (power-ons and reboots).
    pub fn boots(&self) -> u32 {
        self.boots.load(Ordering::SeqCst)
    }

    /// Runs `cmd` in the guest (one line of bash), waiting up to `limit` for it to finish.
    pub fn exec(&self, cmd: &str, limit: Duration) -> Result<Output, String> {
        assert!(!cmd.contains('\n'), "one line per command");
        let mut s = UnixStream::connect(self.socket()).map_err(|e| format!("agent socket: {e}"))?;
        s.set_read_timeout(Some(limit)).map_err(|e| e.to_string())?;
        s.write_all(format!("{cmd}\n").as_bytes())
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        let deadline = Instant::now() + limit;
        loop {
            let text = String::from_utf8_lossy(&buf);
            if let Some(at) = text.find(END) {
                let rest = &text[at + END.len()..];
                if let Some(end) = rest.find('\u{1e}') {
                    let code = rest[..end]
                        .parse()
                        .map_err(|_| "bad end marker".to_owned())?;
                    let mut out = text[..at].to_owned();
                    if out.ends_with('\n') {
                        out.pop();
                    }
                    return Ok(Output { code, text: out });
                }
            }
            if Instant::now() >= deadline {
                return Err(format!("no answer to {cmd:?} in {limit:?}"));
            }
            match s.read(&mut chunk) {
                Ok(0) => return Err("the agent closed the connection".into()),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(format!("reading the agent: {e}")),
            }
        }
    }

    /// Runs `cmd` and asserts it exits 0; returns its output.
    #[track_caller]
    pub fn ok(&self, cmd: &str) -> String {
        // A command sent right after the previous connection closed was once lost by the
        // virtio-serial port under load (no answer to `aloft status` in 120 s, CI): when the
        // guest stays silent, ask once more on a fresh connection.
        let answer = match self.exec(cmd, Duration::from_secs(120)) {
            Err(e) if e.starts_with("no answer") || e.starts_with("reading the agent") => {
                eprintln!("no answer to `{cmd}` in the guest ({e}); asking again");
                self.exec(cmd, Duration::from_secs(120))
            }
            other => other,
        };
        match answer {
            Ok(o) if o.code == 0 => o.text,
            Ok(o) => panic!("`{cmd}` in the guest exited {}: {}", o.code, o.text),
            Err(e) => panic!("`{cmd}` in the guest: {e}"),
        }
    }

    /// Waits until the guest has finished booting (systemd's start-up is over and its agent
    /// answers), at most `limit`.
    pub fn wait_up(&self, limit: Duration) -> Result<Duration, String> {
        let started = Instant::now();
        while started.elapsed() < limit {
            // Prints running or degraded once the start-up jobs are done.
            if let Ok(o) = self.exec("systemctl is-system-running --wait", limit)
                && (o.text.contains("running") || o.text.contains("degraded"))
            {
                return Ok(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        Err(format!(
            "the guest did not come up in {limit:?}; console:\n{}",
            tail(&self.serial(), 40)
        ))
    }

    /// Waits until the serial console has printed `needle` `count` times in all (across boots).
    pub fn wait_serial(&self, needle: &str, count: usize, limit: Duration) -> Result<(), String> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if self.serial().matches(needle).count() >= count {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        Err(format!(
            "the console never showed {needle:?} ×{count}:\n{}",
            tail(&self.serial(), 40)
        ))
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Reads the GRUB environment of the image's EFI system partition (partition 1 at
/// `esp_offset`) with mtools and `grub-editenv`, as `name=value` pairs (sync a running guest
/// first). The ESP holds the redundant pair under `grub/`, read by the rule GRUB's script
/// applies: copy 1 when its lock says `editing=0` and it reads, else copy 2. Panics with the
/// tools' words when no copy can be read.
pub fn grubenv_of_image(disk: &Path, esp_offset: u64, work: &Path) -> Vec<(String, String)> {
    try_grubenv_of_image(disk, esp_offset, work).unwrap_or_else(|e| panic!("{e}"))
}

/// [`grubenv_of_image`], or why the partition could not be read: a guest that has the ESP
/// mounted may be writing it right then (its FAT mid-update), so a caller may sync and retry.
pub fn try_grubenv_of_image(
    disk: &Path,
    esp_offset: u64,
    work: &Path,
) -> Result<Vec<(String, String)>, String> {
    let image = format!("{}@@{esp_offset}", disk.display());
    let read = |file: &str| -> Result<Vec<(String, String)>, String> {
        let local = work.join("grubenv.read");
        let _ = std::fs::remove_file(&local);
        // The guest may have the ESP mounted: its two FATs can differ for a moment.
        let copied = Command::new("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(["-n", "-i", &image, &format!("::/grub/{file}")])
            .arg(&local)
            .output()
            .expect("mtools");
        if !copied.status.success() {
            return Err(format!(
                "mcopy {file}: {}",
                String::from_utf8_lossy(&copied.stderr)
            ));
        }
        let out = Command::new("grub-editenv")
            .arg(&local)
            .arg("list")
            .output()
            .expect("grub-editenv");
        if !out.status.success() {
            return Err(format!(
                "grub-editenv {file}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(std::io::BufReader::new(&out.stdout[..])
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| {
                let (k, v) = l.split_once('=')?;
                Some((k.to_owned(), v.to_owned()))
            })
            .collect())
    };
    let settled = read("mender_grubenv1/lock")
        .is_ok_and(|lock| lock.iter().any(|(k, v)| k == "editing" && v == "0"));
    let first = if settled {
        read("mender_grubenv1/env")
    } else {
        Err("copy 1 is being edited".to_owned())
    };
    first.or_else(|e1| read("mender_grubenv2/env").map_err(|e2| format!("{e1}; {e2}")))
}

/// Checks the FAT of the ESP (`esp_size` bytes at `esp_offset` of `disk`) with `fsck.fat -n` on a
/// copy in `work`. The copy's dirty bit is cleared first: every power cut while the guest has the
/// ESP mounted leaves it set, and it says nothing about the structure. `Err` with fsck's report
/// when it finds anything else (a lost cluster, a cross-linked chain, a bad directory entry).
pub fn check_esp_of_image(
    disk: &Path,
    esp_offset: u64,
    esp_size: u64,
    work: &Path,
) -> Result<String, String> {
    use std::io::Seek as _;
    let copy = work.join("esp.fsck");
    let mut from = std::fs::File::open(disk).map_err(|e| format!("{}: {e}", disk.display()))?;
    from.seek(std::io::SeekFrom::Start(esp_offset))
        .map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    from.take(esp_size)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    // The boot sector names its FAT type; the dirty bit is bit 0 of the byte after the drive
    // number: at 0x25 for FAT12/16, at 0x41 for FAT32.
    let dirty_at = match bytes.get(0x36..0x3e).zip(bytes.get(0x52..0x5a)) {
        Some((b"FAT16   " | b"FAT12   ", _)) => 0x25,
        Some((_, b"FAT32   ")) => 0x41,
        _ => return Err("the ESP has no FAT boot sector".to_owned()),
    };
    bytes[dirty_at] &= !1;
    std::fs::write(&copy, &bytes).map_err(|e| e.to_string())?;
    let out = Command::new("fsck.fat")
        .arg("-n")
        .arg(&copy)
        .output()
        .expect("fsck.fat (dosfstools)");
    let _ = std::fs::remove_file(&copy);
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        Ok(report)
    } else {
        Err(report)
    }
}

#[cfg(test)]
mod tests {
    use super::check_esp_of_image;

    #[test]
    fn the_esp_check_ignores_the_dirty_bit_and_finds_a_damaged_fat() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk.img");
        let offset = 1 << 20;
        let size: u64 = 32 << 20;
        // A disk with 1 MiB before the ESP, as `aloftctl image build` lays it out.
        let esp = dir.path().join("esp.img");
        let made = std::process::Command::new("mkfs.vfat")
            .args(["-S", "512", "-s", "8", "-C"])
            .arg(&esp)
            .arg((size / 1024).to_string())
            .output()
            .expect("mkfs.vfat (dosfstools)");
        assert!(made.status.success());
        let mut bytes = vec![0u8; offset];
        bytes.extend(std::fs::read(&esp).unwrap());
        // Mounted when the power went: the dirty bit is set.
        bytes[offset + 0x25] |= 1;
        std::fs::write(&disk, &bytes).unwrap();
        let clean = check_esp_of_image(&disk, offset as u64, size, dir.path());
        assert!(clean.is_ok(), "{clean:?}");
        // A cluster marked in use that no file owns.
        let reserved = usize::from(u16::from_le_bytes([bytes[offset + 14], bytes[offset + 15]]));
        let fat = offset + reserved * 512;
        bytes[fat + 2 * 100..fat + 2 * 100 + 2].copy_from_slice(&[0xff, 0xff]);
        std::fs::write(&disk, &bytes).unwrap();
        let damaged = check_esp_of_image(&disk, offset as u64, size, dir.path());
        assert!(
            damaged
                .as_ref()
                .is_err_and(|r| r.contains("unused cluster")),
            "{damaged:?}"
        );
    }
}
