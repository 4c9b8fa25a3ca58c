//! `aloft`, the device client: a thin binary over `aloft-device`.
//!
//! Exit codes, as Mender's: 0 ok, 1 error, 2 nothing to commit or roll back, 4 reboot needed
//! (with `--reboot-exit-code`).

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aloft_device::config::Config;
use aloft_device::engine::{Device, InstallResult, Progress};
use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};

/// The aloft device client.
#[derive(Debug, Parser)]
#[command(name = "aloft", version)]
struct Cli {
    /// Configuration: aloft.toml, or a Mender mender.conf (default: /etc/aloft/aloft.toml, else
    /// /etc/mender/mender.conf).
    #[arg(short, long, global = true)]
    config: Option<PathBuf>,
    /// Log what is being done.
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Install an artifact from a file, standard input (`-`) or an HTTP(S) URL.
    Install {
        /// The artifact: a path, `-`, or a URL.
        artifact: String,
        /// Exit with 4 when a reboot is needed.
        #[arg(long)]
        reboot_exit_code: bool,
        /// For URLs: trust only the certificates in this PEM file (default: the web PKI roots).
        #[arg(long)]
        trusted_certs: Option<PathBuf>,
    },
    /// Commit the update running on trial.
    Commit,
    /// Roll the update back.
    Rollback,
    /// Finish what a reboot or power cut interrupted (run at every boot).
    Resume {
        /// Exit with 4 when a reboot is needed.
        #[arg(long)]
        reboot_exit_code: bool,
    },
    /// Print the installed artifact name.
    ShowArtifact,
    /// Print the stored provides.
    ShowProvides,
    /// Show the installed artifact, the slot, the update in progress and the last result.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Run the daemon: authenticate to the server, poll, install, report (needs `[daemon]`).
    Daemon,
    /// Ask the running daemon to check for an update now.
    CheckUpdate,
    /// Ask the running daemon to send its inventory now.
    SendInventory,
}

fn main() -> ExitCode {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let cli = Cli::parse();
    let daemon = matches!(cli.command, Cmd::Daemon);
    let level = if cli.verbose || daemon {
        "info"
    } else {
        "warn"
    };
    // `ALOFT_LOG`: a level, or `target=level,...` (no regular expressions: small binary).
    let filter: tracing_subscriber::filter::Targets = std::env::var("ALOFT_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| level.parse().expect("a valid level"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    // The daemon's log lines carry a time; the short-lived commands' do not.
    let registry = tracing_subscriber::registry().with(filter);
    if daemon {
        registry
            .with(fmt)
            .with(aloft_daemon::journal::LogLayer)
            .init();
    } else {
        // `resume` at boot also writes into the log of the daemon's deployment (below).
        registry
            .with(fmt.without_time())
            .with(aloft_daemon::journal::LogLayer)
            .init();
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn config_path(given: Option<PathBuf>) -> PathBuf {
    given.unwrap_or_else(|| {
        let ours = Path::new("/etc/aloft/aloft.toml");
        let mender = Path::new("/etc/mender/mender.conf");
        if !ours.exists() && mender.exists() {
            mender.to_owned()
        } else {
            ours.to_owned()
        }
    })
}

fn run(cli: Cli) -> Result<ExitCode> {
    let path = config_path(cli.config);
    let config = Config::load(&path)?;
    match cli.command {
        Cmd::Daemon => {
            let daemon = aloft_daemon::daemon::Daemon::new(config)
                .with_context(|| format!("cannot start the daemon of {}", path.display()))?;
            daemon.run();
        }
        Cmd::CheckUpdate | Cmd::SendInventory => {
            let request = if matches!(cli.command, Cmd::CheckUpdate) {
                aloft_daemon::control::Request::CheckUpdate
            } else {
                aloft_daemon::control::Request::SendInventory
            };
            let socket = aloft_daemon::daemon::control_socket(&config);
            aloft_daemon::control::send(&socket, request).map_err(anyhow::Error::msg)?;
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let daemon_dir = config.data_dir.join("daemon");
    // What the boot-time resume finds (a fallback, the failed boot's forensics) belongs to the
    // log of the deployment the daemon is working on, which the server gets after a failure.
    if matches!(cli.command, Cmd::Resume { .. })
        && config.daemon.is_some()
        && daemon_dir.join("deployment.json").exists()
    {
        aloft_daemon::journal::start_log(&daemon_dir.join("deployment.log"), false);
    }
    let device = Device::open(config)
        .with_context(|| format!("cannot open the device of {}", path.display()))?;
    let mut out = std::io::stdout().lock();
    match cli.command {
        Cmd::Install {
            artifact,
            reboot_exit_code,
            trusted_certs,
        } => {
            let source: Box<dyn std::io::Read + Send> =
                if artifact.starts_with("http://") || artifact.starts_with("https://") {
                    aloft_device::fetch::open_url(&artifact, trusted_certs.as_deref())?
                } else if artifact == "-" {
                    Box::new(std::io::stdin())
                } else {
                    Box::new(
                        std::fs::File::open(&artifact)
                            .with_context(|| format!("cannot open {artifact}"))?,
                    )
                };
            let bar = progress_bar();
            let result = device
                .install(
                    std::io::BufReader::with_capacity(64 * 1024, source),
                    &mut |n, total| {
                        bar.set_length(total);
                        bar.set_position(n);
                    },
                )
                .with_context(|| format!("cannot install {artifact}"))?;
            bar.finish_and_clear();
            match result {
                InstallResult::Committed => {
                    writeln!(out, "installed and committed {artifact}")?;
                    Ok(ExitCode::SUCCESS)
                }
                InstallResult::RebootRequired => {
                    writeln!(
                        out,
                        "installed {artifact}: reboot to run it, then it is checked and committed"
                    )?;
                    Ok(reboot_code(reboot_exit_code))
                }
            }
        }
        Cmd::Commit => report(&mut out, &device.commit()?, Asked::Commit, false),
        Cmd::Rollback => report(&mut out, &device.rollback()?, Asked::Rollback, false),
        Cmd::Resume { reboot_exit_code } => report(
            &mut out,
            &device.resume_at_boot()?,
            Asked::Resume,
            reboot_exit_code,
        ),
        Cmd::ShowArtifact => {
            writeln!(out, "{}", device.installed()?.artifact_name)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::ShowProvides => {
            for (k, v) in device.provides()? {
                writeln!(out, "{k}={v}")?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Status { json } => {
            let status = device.status()?;
            // What the daemon is doing, from its journal (absent: nothing).
            let record: aloft_daemon::journal::Record =
                aloft_device::state::load(&daemon_dir.join("deployment.json")).unwrap_or_default();
            let download: aloft_daemon::download::Partial =
                aloft_device::state::load(&daemon_dir.join("download.json")).unwrap_or_default();
            let deployment = (!record.id.is_empty()).then_some(&record);
            if json {
                let mut value = serde_json::to_value(&status)?;
                value["deployment"] = serde_json::json!(deployment.map(|r| serde_json::json!({
                    "id": r.id, "artifact_name": r.artifact_name, "step": r.step,
                    "status": r.status, "reason": r.reason,
                    "downloaded": (download.deployment == r.id).then_some(download.offset),
                    "size": (download.deployment == r.id).then_some(download.total).flatten(),
                })));
                serde_json::to_writer_pretty(&mut out, &value)?;
                writeln!(out)?;
            } else {
                if let Some(r) = deployment {
                    let progress = match (download.deployment == r.id, download.total) {
                        (true, Some(t)) if t > 0 => format!(
                            ", downloaded {} of {} bytes ({}%)",
                            download.offset,
                            t,
                            download.offset * 100 / t
                        ),
                        _ => String::new(),
                    };
                    writeln!(
                        out,
                        "deployment: {} of {} ({:?}{progress})",
                        r.id, r.artifact_name, r.step
                    )?;
                }
                writeln!(out, "artifact: {}", status.artifact_name)?;
                if let Some(slot) = status.booted_slot {
                    writeln!(out, "running slot: {slot}")?;
                }
                if let Some(next) = status.next_boot {
                    let how = if next.trial {
                        "on trial (falls back unless committed)"
                    } else {
                        "for good"
                    };
                    writeln!(out, "next boot: slot {} {how}", next.slot)?;
                }
                match (&status.pending, &status.pending_artifact) {
                    (Some(phase), Some(name)) => {
                        writeln!(out, "update in progress: {name} ({phase:?})")?;
                    }
                    _ => writeln!(out, "update in progress: none")?,
                }
                match &status.last {
                    Some(o) if o.success => {
                        writeln!(out, "last update: {} succeeded", o.artifact_name)?;
                    }
                    Some(o) => writeln!(
                        out,
                        "last update: {} failed: {}",
                        o.artifact_name,
                        o.reason.as_deref().unwrap_or("?")
                    )?,
                    None => writeln!(out, "last update: none")?,
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Daemon | Cmd::CheckUpdate | Cmd::SendInventory => unreachable!("handled above"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_tell_what_happened() {
        let failed = Progress::Failed("the new slot b did not boot".into());
        // (engine answer, command, --reboot-exit-code) → exit code
        let cases = [
            (Progress::Committed, Asked::Commit, false, 0),
            (Progress::Nothing, Asked::Commit, false, 2),
            (Progress::RebootRequired, Asked::Commit, true, 2),
            (failed.clone(), Asked::Commit, false, 1),
            (failed.clone(), Asked::Resume, false, 0),
            (failed.clone(), Asked::Rollback, false, 0),
            (Progress::Nothing, Asked::Rollback, false, 2),
            (Progress::Nothing, Asked::Resume, false, 2),
            (Progress::RebootRequired, Asked::Resume, false, 0),
            (Progress::RebootRequired, Asked::Resume, true, 4),
            (Progress::RebootRequired, Asked::Rollback, true, 4),
            (Progress::LeftToDaemon, Asked::Resume, false, 0),
            (Progress::Committed, Asked::Resume, false, 0),
        ];
        for (progress, asked, flag, want) in cases {
            assert_eq!(
                exit_code(&progress, asked, flag),
                want,
                "{progress:?} {asked:?} {flag}"
            );
        }
    }
}

fn reboot_code(wanted: bool) -> ExitCode {
    if wanted {
        ExitCode::from(4)
    } else {
        ExitCode::SUCCESS
    }
}

/// Which command asked: the exit code tells whether *that* was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    Commit,
    Rollback,
    Resume,
}

/// The exit code of `commit`, `rollback` and `resume` for what the engine answered: 0 only
/// when what was asked happened (`commit`: committed; `rollback`: rolled back; `resume`: the
/// interrupted step was finished, whatever the update's outcome, which `status` shows), 2 when
/// there was nothing to do, 1 when a commit found the update failed, 4 for a needed reboot
/// when asked to.
fn exit_code(progress: &Progress, asked: Asked, reboot_exit_code: bool) -> u8 {
    match (progress, asked) {
        (Progress::Nothing, _) | (Progress::RebootRequired, Asked::Commit) => 2,
        (Progress::Failed(_), Asked::Commit) => 1,
        (Progress::Failed(_) | Progress::Committed | Progress::LeftToDaemon, _) => 0,
        (Progress::RebootRequired, _) => {
            if reboot_exit_code {
                4
            } else {
                0
            }
        }
    }
}

fn report(
    out: &mut impl std::io::Write,
    progress: &Progress,
    asked: Asked,
    reboot_exit_code: bool,
) -> Result<ExitCode> {
    match (progress, asked) {
        (Progress::Nothing, Asked::Commit) => writeln!(out, "nothing to commit")?,
        (Progress::Nothing, _) => writeln!(out, "no update in progress")?,
        (Progress::RebootRequired, Asked::Commit) => writeln!(
            out,
            "nothing to commit yet: reboot into the new system first (it is then checked and committed)"
        )?,
        (Progress::RebootRequired, _) => writeln!(out, "reboot needed to go on")?,
        (Progress::Committed, _) => writeln!(out, "committed")?,
        (Progress::Failed(reason), Asked::Rollback) => writeln!(out, "rolled back: {reason}")?,
        (Progress::Failed(reason), _) => writeln!(out, "update failed: {reason}")?,
        (Progress::LeftToDaemon, _) => writeln!(
            out,
            "the new system runs on trial: the daemon checks it and asks the server before it commits"
        )?,
    }
    Ok(ExitCode::from(exit_code(progress, asked, reboot_exit_code)))
}

fn progress_bar() -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "installing [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar
}
