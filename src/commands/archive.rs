//! `eventdeck archive --before T [--delete]` (a server archives, through [`RemoteClient`]) and
//! `eventdeck archive --list` (the archive folder read here: partitions, events, time ranges).

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;

use crate::cli::ArchiveArgs;
use crate::commands::dlq::{client, explain};
use eventdeck::domain::Timestamp;
use eventdeck::engine::archive::list::{self, Partition};
use eventdeck::service::EventService;

pub async fn run(args: ArchiveArgs, dir: Option<PathBuf>) -> anyhow::Result<()> {
    if args.list {
        let dir = dir.context("--list needs the archive folder: --dir DIR or [archive] dir")?;
        let shown = dir.clone();
        let partitions = tokio::task::spawn_blocking(move || list::partitions(&dir))
            .await
            .context("reading the archive stopped")?
            .map_err(anyhow::Error::msg)?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&partitions).context("cannot print the list as JSON")?);
        } else if partitions.is_empty() {
            println!(
                "no archive under {} yet (the server's folder is its [archive] dir: pass --dir DIR or the same config)",
                shown.display()
            );
        } else {
            print!("{}", table(&partitions));
        }
        return Ok(());
    }
    let Some(before) = args.before.as_deref() else { anyhow::bail!("give --before TIME, or --list") };
    let before = Timestamp::parse(before.trim())
        .map_err(|e| anyhow::anyhow!("--before: `{before}` is {e}; use RFC 3339, e.g. 2026-01-01T00:00:00Z"))?;
    let report = client(&args.server)?.archive(before, args.delete).await.map_err(explain)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).context("cannot print the answer as JSON")?);
    } else {
        for file in &report.files {
            println!("{file}");
        }
        let deleted = if args.delete { format!(", {} deleted from the store", report.deleted) } else { String::new() };
        println!("archived {} events into {} files{deleted}", report.archived, report.files.len());
    }
    Ok(())
}

fn table(partitions: &[Partition]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24} {:>6} {:>10} {:>12}  {:<27}  {:<27}",
        "PARTITION", "FILES", "EVENTS", "BYTES", "FIRST", "LAST"
    );
    let time = |t: Option<Timestamp>| t.map(|t| t.to_string()).unwrap_or_else(|| "-".to_owned());
    for p in partitions {
        let _ = writeln!(
            out,
            "{:<24} {:>6} {:>10} {:>12}  {:<27}  {:<27}",
            p.path,
            p.files,
            p.events,
            p.bytes,
            time(p.first),
            time(p.last)
        );
    }
    let events: u64 = partitions.iter().map(|p| p.events).sum();
    let files: u64 = partitions.iter().map(|p| p.files).sum();
    let _ = writeln!(out, "{} partitions, {files} files, {events} events", partitions.len());
    out
}
