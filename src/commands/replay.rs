//! `eventdeck replay`: send stored events again, through [`RemoteClient`]. Without `--yes` it shows a
//! dry run first and asks on the terminal; then it follows the job until it completes or fails.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{Context, bail};

use super::dlq::{client, explain};
use crate::cli::ReplayArgs;
use eventdeck::domain::{FieldError, ReplayProgress, ReplayRequest, ReplayStarted, ReplayStatus, ReplayTarget};
use eventdeck::remote::RemoteClient;
use eventdeck::service::EventService;
use eventdeck::wire::{ReplayCreate, ReplayTargetCreate};

/// Events of a dry run printed before the question.
const PREVIEW_ROWS: usize = 10;
/// How often the job's progress is read.
const POLL: Duration = Duration::from_millis(500);
/// Progress reads that may fail in a row (the server restarting) before giving up.
const MAX_POLL_FAILURES: u32 = 20;

pub async fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let client = client(&args.server)?;
    let request = request(&args)?;
    if !args.yes {
        let preview =
            client.replay(ReplayRequest { dry_run: true, confirm: false, ..request.clone() }).await.map_err(explain)?;
        print!("{}", preview_text(&preview));
        if args.dry_run {
            return Ok(());
        }
        if preview.events_count == 0 {
            println!("nothing to replay");
            return Ok(());
        }
        let question = format!("Replay {} to {}? [y/N] ", events(preview.events_count), target_text(request.target));
        if !std::io::stdin().is_terminal() {
            bail!(
                "not replaying {}: stdin is not a terminal to ask on; pass --yes to replay without asking",
                events(preview.events_count)
            );
        }
        if !ask(question).await? {
            bail!("replay cancelled");
        }
    }
    let started = client.replay(ReplayRequest { dry_run: false, confirm: true, ..request }).await.map_err(explain)?;
    if started.events_count == 0 {
        println!("nothing to replay: no stored event matches");
        return Ok(());
    }
    let Some(id) = started.replay_id else {
        bail!("the server started no replay job (status {:?})", started.status);
    };
    println!("replay {id} started: {}", events(started.events_count));
    follow(&client, id).await
}

/// The request the flags describe, checked here with the server's own rules; errors name the flags.
fn request(args: &ReplayArgs) -> anyhow::Result<ReplayRequest> {
    let body = ReplayCreate {
        event_ids: (!args.ids.is_empty()).then(|| args.ids.iter().map(|id| id.trim().to_owned()).collect()),
        stream_id: args.stream.clone(),
        start_time: args.from.clone(),
        end_time: args.to.clone(),
        event_type: args.event_type.clone(),
        event_source: args.source.clone(),
        target: match (&args.subscription, &args.processor) {
            (None, None) => None,
            (subscription, processor) => {
                Some(ReplayTargetCreate { subscription_id: subscription.clone(), processor_id: processor.clone() })
            }
        },
        dry_run: args.dry_run,
        confirm: args.yes,
    };
    body.into_request().map_err(|error| anyhow::anyhow!(flag_error(error)))
}

/// A field error with the body's field named as the flag that fills it.
fn flag_error(error: FieldError) -> String {
    let flag = match error.field.split('[').next().unwrap_or_default() {
        "event_ids" => "--ids",
        "stream_id" => "--stream",
        "start_time" => "--from",
        "end_time" => "--to",
        "event_type" => "--type",
        "event_source" => "--source",
        "target.subscription_id" => "--subscription",
        "target.processor_id" => "--processor",
        _ => return error.to_string(),
    };
    format!("{flag}: {}", error.message)
}

fn events(n: u64) -> String {
    format!("{n} event{}", if n == 1 { "" } else { "s" })
}

fn target_text(target: Option<ReplayTarget>) -> String {
    match target {
        None => "every matching subscription and processor".to_owned(),
        Some(ReplayTarget::Subscription { subscription_id }) => format!("subscription {subscription_id}"),
        Some(ReplayTarget::Processor { processor_id }) => format!("processor {processor_id}"),
    }
}

/// The count and the first events of a dry run.
fn preview_text(preview: &ReplayStarted) -> String {
    let mut text = format!("{} match\n", events(preview.events_count));
    for event in preview.events.iter().take(PREVIEW_ROWS) {
        text.push_str(&format!(
            "  seq {:<8} {}  {:<32} {}\n",
            event.seq,
            event.timestamp,
            event.event_type,
            event.stream_id.as_deref().unwrap_or("-")
        ));
    }
    let shown = preview.events.len().min(PREVIEW_ROWS) as u64;
    if preview.events_count > shown {
        text.push_str(&format!("  … and {} more\n", preview.events_count - shown));
    }
    text
}

/// Asks on stderr and reads one line from stdin (on a blocking thread); only `y` or `yes` agrees.
async fn ask(question: String) -> anyhow::Result<bool> {
    let answer = tokio::task::spawn_blocking(move || {
        eprint!("{question}");
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await
    .context("the question was interrupted")?
    .context("cannot read the answer from stdin")?;
    Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}

/// Prints progress as it changes until the job completes (Ok) or fails (Err).
async fn follow(client: &RemoteClient, id: eventdeck::domain::ReplayId) -> anyhow::Result<()> {
    let mut last: Option<(ReplayStatus, u64, u64)> = None;
    let mut failures = 0;
    loop {
        let progress = match client.replay_progress(id).await {
            Ok(progress) => progress,
            Err(error)
                if failures < MAX_POLL_FAILURES && !matches!(error, eventdeck::service::Error::NotFound { .. }) =>
            {
                failures += 1;
                tracing::warn!(%error, "reading the replay's progress failed; trying again");
                tokio::time::sleep(POLL).await;
                continue;
            }
            Err(error) => return Err(explain(error)),
        };
        failures = 0;
        let now = (progress.status, progress.done, progress.failed);
        if last != Some(now) {
            println!("{}", progress_line(&progress));
            last = Some(now);
        }
        match progress.status {
            ReplayStatus::Completed => {
                if progress.failed > 0 {
                    println!("{} of {} failed: see `eventdeck dlq list`", progress.failed, progress.total);
                }
                return Ok(());
            }
            ReplayStatus::Failed => {
                bail!("replay {id} failed: {}", progress.error.as_deref().unwrap_or("the server gave no reason"));
            }
            ReplayStatus::Running | ReplayStatus::DryRun => tokio::time::sleep(POLL).await,
        }
    }
}

fn progress_line(progress: &ReplayProgress) -> String {
    if progress.status == ReplayStatus::Completed && progress.total == 0 {
        return format!(
            "replay {}: nothing to do: no subscription or processor wants the selected events",
            progress.replay_id
        );
    }
    let status = match progress.status {
        ReplayStatus::DryRun => "dry run",
        ReplayStatus::Running => "running",
        ReplayStatus::Completed => "completed",
        ReplayStatus::Failed => "failed",
    };
    format!(
        "replay {}: {status}, {}/{} done, {} failed",
        progress.replay_id, progress.done, progress.total, progress.failed
    )
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(line: &[&str]) -> Result<ReplayArgs, String> {
        let cli = Cli::try_parse_from(["eventdeck", "replay"].iter().chain(line)).map_err(|e| e.to_string())?;
        match cli.command {
            Some(Command::Replay(args)) => Ok(args),
            other => Err(format!("parsed as {other:?}")),
        }
    }

    #[test]
    fn flags_need_exactly_one_selection_and_one_target() {
        assert!(parse(&[]).is_err(), "a selection is required");
        assert!(parse(&["--ids", "a", "--stream", "user:1"]).is_err());
        assert!(parse(&["--stream", "user:1", "--from", "2026-01-01T00:00:00Z"]).is_err());
        assert!(parse(&["--stream", "user:1", "--subscription", "a", "--processor", "b"]).is_err());
        assert!(parse(&["--stream", "user:1", "--dry-run", "--yes"]).is_err());
        let args =
            parse(&["--from", "2026-01-01T00:00:00Z", "--to", "2026-02-01T00:00:00Z", "--type", "order.*"]).unwrap();
        let range = request(&args).unwrap();
        assert!(range.target.is_none() && !range.dry_run && !range.confirm);
        let args = parse(&["--ids", "0193a000-0000-7000-8000-000000000001,0193a000-0000-7000-8000-000000000002", "-y"])
            .unwrap();
        assert!(request(&args).unwrap().confirm, "--yes confirms");
    }

    #[test]
    fn a_replay_with_nothing_to_do_says_so() {
        let progress = |total, done| ReplayProgress {
            replay_id: eventdeck::domain::ReplayId::new_v7(),
            status: ReplayStatus::Completed,
            events_count: 2,
            total,
            done,
            failed: 0,
            started_at: eventdeck::domain::Timestamp::now(),
            finished_at: None,
            error: None,
        };
        let line = progress_line(&progress(0, 0));
        assert!(line.contains("nothing to do") && !line.contains("0/0"), "{line}");
        assert!(progress_line(&progress(3, 3)).contains("3/3 done"));
    }

    #[test]
    fn bad_values_name_the_flag() {
        let cases = [
            (vec!["--from", "yesterday"], "--from"),
            (vec!["--ids", "nope"], "--ids"),
            (vec!["--stream", "nocolon"], "--stream"),
            (vec!["--stream", "user:1", "--processor", "x"], "--processor"),
            (vec!["--stream", "user:1", "--source", "moon"], "--source"),
        ];
        for (line, flag) in cases {
            let error = request(&parse(&line).unwrap()).unwrap_err().to_string();
            assert!(error.starts_with(flag), "{line:?}: {error}");
        }
    }
}
