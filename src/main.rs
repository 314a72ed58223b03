//! The eventdeck binary: parse the command line, set up logging and configuration, run the command.

mod cli;
mod commands;

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

use cli::{Cli, Command, ServeArgs};
use eventdeck::config::{Config, Overrides};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Not eprintln!: it panics when the terminal is gone (a console closed with its window).
            let _ = writeln!(std::io::stderr(), "eventdeck: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or_else(|| Command::Console(ServeArgs::default())) {
        Command::Console(ServeArgs { addr, storage_url }) => {
            let config = Config::load(cli.config.as_deref(), &Overrides { addr, storage_url })?;
            commands::console::embedded(config).await
        }
        Command::Demo(args) => {
            let config = Config::load(cli.config.as_deref(), &Overrides { addr: args.addr, storage_url: None })?;
            commands::console::demo(config).await
        }
        Command::Attach(args) => {
            let config = Config::load(cli.config.as_deref(), &Overrides::default())?;
            commands::console::attach(config, &args.url, args.api_key).await
        }
        Command::Serve(ServeArgs { addr, storage_url }) => {
            let config = Config::load(cli.config.as_deref(), &Overrides { addr, storage_url })?;
            let exporter = init_json_logs(&config.log.level, config.tracing.otlp_endpoint.trim())?;
            let served = commands::serve::run(config).await;
            if let Some(exporter) = exporter {
                // Flushing sends the last spans over blocking HTTP: off the async threads.
                tokio::task::spawn_blocking(move || exporter.shutdown()).await.context("exporting the last spans")?;
            }
            served
        }
        Command::Openapi => {
            print!("{}", eventdeck::api::openapi::document_json());
            Ok(())
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
            if args.scenario == cli::Scenario::IngestOverhead {
                // Log as `serve` does (JSON at info), to nowhere: the request span then costs what it
                // costs in production.
                let logs = tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::sink)
                    .with_filter(EnvFilter::new("info"));
                tracing_subscriber::registry().with(logs).init();
            } else {
                init_stderr_logs();
            }
            commands::bench::run(args).await
        }
        Command::Replay(args) => {
            init_stderr_logs();
            commands::replay::run(args).await
        }
        Command::Dlq(args) => {
            init_stderr_logs();
            commands::dlq::run(args).await
        }
        Command::Archive(args) => {
            init_stderr_logs();
            let dir = match (&args.dir, args.list) {
                (None, true) => Some(Config::load(cli.config.as_deref(), &Overrides::default())?.archive.dir.into()),
                (dir, _) => dir.clone(),
            };
            commands::archive::run(args, dir).await
        }
    }
}

/// `serve`: JSON lines on stdout, level from RUST_LOG or `[log] level`; with an OTLP endpoint, spans
/// are exported too (whatever the log level: the filter applies to the log lines only).
fn init_json_logs(level: &str, otlp_endpoint: &str) -> anyhow::Result<Option<eventdeck::telemetry::Exporter>> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let logs = tracing_subscriber::fmt::layer().json().with_writer(std::io::stdout).with_filter(filter);
    let registry = tracing_subscriber::registry().with(logs);
    if otlp_endpoint.is_empty() {
        registry.init();
        return Ok(None);
    }
    let (spans, exporter) = eventdeck::telemetry::otlp_layer(otlp_endpoint)?;
    registry.with(spans).init();
    Ok(Some(exporter))
}

/// Client commands keep stdout for their data; warnings go to stderr.
fn init_stderr_logs() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
