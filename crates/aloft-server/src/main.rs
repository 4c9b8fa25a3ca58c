//! `aloft-server`: the command line over the library.

use std::net::SocketAddr;
use std::path::PathBuf;

use aloft_server::config::CliOverrides;
use aloft_server::server;
use anyhow::Context as _;
use clap::{Parser, Subcommand};

/// The aloft update server.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the device and management APIs over HTTPS.
    Serve {
        /// Configuration file (TOML; see docs/server-config.md). Flags and environment
        /// variables override its keys.
        #[arg(long, env = "ALOFT_CONFIG")]
        config: Option<PathBuf>,
        /// Data folder (database, artifacts, keys, generated certificate); required unless the
        /// configuration file names one.
        #[arg(long, env = "ALOFT_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Address to listen on [default: 0.0.0.0:8443].
        #[arg(long, env = "ALOFT_LISTEN")]
        listen: Option<SocketAddr>,
        /// URL devices reach this server at (used in download links); default: the Host the
        /// request came to.
        #[arg(long, env = "ALOFT_PUBLIC_URL")]
        public_url: Option<String>,
        /// TLS certificate chain (PEM); without it a self-signed one is made in the data folder.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// TLS private key (PEM).
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Log as JSON lines (default on when stderr is not a terminal).
        #[arg(long)]
        log_json: Option<bool>,
        /// The database: `sqlite://PATH` or `postgres://USER:PASSWORD@HOST/DB`; default:
        /// `aloft.db` in the data folder.
        #[arg(long, env = "ALOFT_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
    },
    /// Apply database migrations and exit.
    Migrate {
        /// Data folder.
        #[arg(long, env = "ALOFT_DATA_DIR")]
        data_dir: PathBuf,
        /// The database (as for `serve`).
        #[arg(long, env = "ALOFT_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
    },
    /// A demo: this server on a fresh data folder with simulated devices running the aloft
    /// daemon, some accepted and some pending, and sample artifacts ready to deploy.
    Demo {
        /// Data folder (emptied first if an earlier demo made it).
        #[arg(long, default_value = "aloft-demo")]
        data_dir: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
        /// Number of simulated devices.
        #[arg(long, default_value_t = 24)]
        devices: usize,
        /// How many of them are left pending for you to accept.
        #[arg(long, default_value_t = 2)]
        pending: usize,
        /// Seconds between the devices' update checks.
        #[arg(long, default_value_t = 3)]
        poll_seconds: u64,
        /// Each device's download speed (so that a phase takes about a minute); "0": no limit.
        #[arg(long, default_value = "150K")]
        download_rate: String,
        /// Do not start the phased rollout (deploy yourself).
        #[arg(long)]
        no_rollout: bool,
        /// Seconds a phase's success must hold before the rollout opens the next.
        #[arg(long, default_value_t = 20)]
        soak_seconds: u64,
    },
    /// Manage users offline.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user.
    Create {
        /// Data folder.
        #[arg(long, env = "ALOFT_DATA_DIR")]
        data_dir: PathBuf,
        /// E-mail (the login name).
        #[arg(long)]
        email: String,
        /// Password (at least 8 characters); read from `ALOFT_PASSWORD` when absent.
        #[arg(long, env = "ALOFT_PASSWORD", hide_env_values = true)]
        password: String,
        /// The database (as for `serve`).
        #[arg(long, env = "ALOFT_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
    },
}

fn init_logging(json: bool) {
    init_logging_level(json, "info");
}

fn init_logging_level(json: bool, default: &str) {
    use std::io::IsTerminal as _;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("ALOFT_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aloft-server: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve {
            config,
            data_dir,
            listen,
            public_url,
            tls_cert,
            tls_key,
            log_json,
            database_url,
        } => {
            use std::io::IsTerminal as _;
            let cfg = aloft_server::config::load(
                config.as_deref(),
                CliOverrides {
                    data_dir,
                    listen,
                    public_url,
                    tls_cert,
                    tls_key,
                    log_json,
                    database_url,
                },
            )?;
            init_logging(cfg.log_json.unwrap_or(!std::io::stderr().is_terminal()));
            let running = server::start_config(cfg).await?;
            eprintln!(
                "aloft-server: serving https://{} (certificate {}, SHA-256 {})",
                running.addr,
                running.cert.display(),
                aloft_server::tls::fingerprint(&running.cert)?
            );
            shutdown_signal().await;
            tracing::info!("shutting down");
            running.shutdown().await?;
            Ok(())
        }
        Command::Demo {
            data_dir,
            listen,
            devices,
            pending,
            poll_seconds,
            download_rate,
            no_rollout,
            soak_seconds,
        } => {
            // Quiet by default: the demo's terminal is for its own instructions.
            init_logging_level(false, "warn");
            let demo = aloft_server::demo::Demo::start(aloft_server::demo::DemoOptions {
                data_dir: data_dir.clone(),
                listen,
                devices,
                pending,
                poll_seconds,
                download_rate: (download_rate != "0").then_some(download_rate),
                rollout: (!no_rollout).then_some(aloft_server::demo::DemoRollout { soak_seconds }),
            })
            .await?;
            print_demo(&demo, &data_dir, devices);
            shutdown_signal().await;
            eprintln!("aloft-server: stopping the demo");
            demo.stop().await?;
            Ok(())
        }
        Command::Migrate {
            data_dir,
            database_url,
        } => {
            server::open_store_url(&data_dir, database_url.as_deref()).await?;
            eprintln!("aloft-server: the database is up to date");
            Ok(())
        }
        Command::User {
            command:
                UserCommand::Create {
                    data_dir,
                    email,
                    password,
                    database_url,
                },
        } => {
            let store = server::open_store_url(&data_dir, database_url.as_deref()).await?;
            let user = aloft_server::http::useradm::create_user_row(&store, &email, &password)
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.message))
                .context("creating the user")?;
            eprintln!("aloft-server: created user {} ({})", user.email, user.id);
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

#[allow(clippy::print_stdout)]
fn print_demo(demo: &aloft_server::demo::Demo, data_dir: &std::path::Path, devices: usize) {
    let url = &demo.url;
    let cert = demo.cert.display();
    let pending = devices - demo.accepted;
    println!(
        "\naloft demo is running\n\
         \n  browser    open {url}/ (accept the self-signed certificate)\n\
         \x20 server     {url}\n\
         \x20 login      {admin} / {password}\n\
         \x20 devices    {devices} simulated A/B devices running `aloft daemon` ({accepted} accepted, {pending} pending), in {data}/devices\n\
         \x20 artifacts  {artifacts}\n\
         \x20 TLS        self-signed certificate {cert}\n\
         {rollout}\
         \nDeploy from a terminal:\n\
         \n  JWT=$(curl -s --cacert {cert} -u {admin}:{password} -X POST {url}/api/management/v1/useradm/auth/login)\n\
         \x20 curl -s --cacert {cert} -H \"Authorization: Bearer $JWT\" -H 'Content-Type: application/json' \\\n\
         \x20   -d '{{\"name\":\"app\",\"artifact_name\":\"demo-app-2\",\"all_devices\":true}}' {url}/api/management/v1/deployments/deployments\n\
         \x20 curl -s --cacert {cert} -H \"Authorization: Bearer $JWT\" {url}/api/management/v1/deployments/deployments\n\
         \nCtrl-C stops everything.",
        admin = aloft_server::demo::ADMIN,
        password = demo.password,
        accepted = demo.accepted,
        data = data_dir.display(),
        artifacts = demo.artifacts.join(", "),
        rollout = demo.rollout.as_ref().map_or(String::new(), |r| format!(
            "\nA rollout is under way: {r}. Watch it under Deployments; resume it there.\n"
        )),
    );
}
