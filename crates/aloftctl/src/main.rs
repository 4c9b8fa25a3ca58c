//! `aloftctl`: the aloft operator tool. A thin binary: arguments, logging, exit codes; the work
//! is done by the `aloft-artifact` library, and by the server's management API (`remote`).
//!
//! Exit codes: 0 success, 1 invalid artifact or signature (or any other failure), 2 usage error.

mod artifact;
mod cli;
mod delta;
mod image;
mod key;
mod progress;
mod remote;
mod sim;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("ALOFT_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if cli.verbose { "info" } else { "warn" })
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .init();
    let result = match cli.command {
        cli::Command::Artifact { command } => artifact::run(*command),
        cli::Command::Key { command } => key::run(command),
        cli::Command::Image { command } => image::run(command),
        cli::Command::Delta { command } => delta::run(command),
        cli::Command::Sim { command } => sim::run(command),
        cli::Command::Login {
            server,
            user,
            password_stdin,
            ca_cert,
        } => remote::login(&server, &user, password_stdin, ca_cert),
        cli::Command::Logout { server } => remote::logout(server.as_deref()),
        cli::Command::Devices { target, command } => remote::devices(&target, command),
        cli::Command::Groups { target, command } => remote::groups(&target, command),
        cli::Command::Artifacts { target, command } => remote::artifacts(&target, command),
        cli::Command::Deployments { target, command } => remote::deployments(&target, command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
