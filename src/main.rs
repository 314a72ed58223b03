//! The eventdeck binary: parse the command line, set up logging and configuration, run the command.

mod cli;
mod commands;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command, ServeArgs};
use eventdeck::config::{Config, Overrides};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("eventdeck: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Console) {
        Command::Console => anyhow::bail!(
            "the console is not built yet (it arrives with issue #5).\n\
             Run the server headless: `eventdeck serve`, then post events and follow them with `eventdeck tail`."
        ),
        Command::Serve(ServeArgs { addr, storage_url }) => {
            let config = Config::load(cli.config.as_deref(), &Overrides { addr, storage_url })?;
            init_json_logs(&config.log.level);
            commands::serve::run(config).await
        }
        Command::Publish(args) => {
            init_stderr_logs();
            commands::publish::run(args).await
        }
        Command::Tail(args) => {
            init_stderr_logs();
            commands::tail::run(args).await
        }
        Command::Bench(args) => {
            init_stderr_logs();
            commands::bench::run(args).await
        }
    }
}

/// `serve`: JSON lines on stdout, level from RUST_LOG or `[log] level`.
fn init_json_logs(level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt().json().with_env_filter(filter).with_writer(std::io::stdout).init();
}

/// Client commands keep stdout for their data; warnings go to stderr.
fn init_stderr_logs() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
