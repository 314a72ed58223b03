//! `eventdeck publish`: one event from flags, or JSON lines from stdin posted in batches.
//!
//! Reading stdin, a batch is sent when it holds `--batch` lines or when its first line has waited
//! `--flush-ms`. A batch the server did not take (no answer, a timeout, 5xx, 429) is sent again after
//! `--backoff-ms`, doubled each time, up to `--retries` times; a line the server refuses is reported and
//! not retried. Every line gets an idempotency key when it has none, fixed before its first send, so a
//! batch sent again after an answer was lost (or after a restart, with `--spool`) is stored once.
//! One batch is in flight at a time: while it is retried stdin is not read, so a slow server slows the
//! producer instead of filling memory.

mod spool;

use std::io::{BufRead, IsTerminal};
use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::client::{Api, send};
use crate::cli::PublishArgs;
use eventdeck::wire::{ErrorBody, EventCreate};
use spool::{Entry, Spool};

/// The longest wait between two tries of a batch.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long one try of a batch may take before it counts as failed (and is retried).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the progress line is redrawn.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

pub async fn run(args: PublishArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.server)?;
    match args.event_type.clone() {
        Some(event_type) => publish_one(&api, event_type, args).await,
        None => Publisher::new(api, &args)?.run(args.spool.as_deref()).await,
    }
}

async fn publish_one(api: &Api, event_type: String, args: PublishArgs) -> anyhow::Result<()> {
    let data = match &args.data {
        Some(text) => Some(serde_json::from_str::<Value>(text).context("--data is not JSON")?),
        None => None,
    };
    let body = EventCreate {
        event_type: Some(event_type),
        event_source: args.source,
        event_category: args.category,
        user_id: args.user,
        data,
        stream_id: args.stream,
        idempotency_key: args.idempotency_key,
        ..EventCreate::default()
    };
    let response = send(api.post("/api/v1/events/create").json(&body)).await?;
    // 200 instead of 201: the idempotency key was seen before and nothing new was stored.
    let duplicate = response.status() == reqwest::StatusCode::OK;
    let event: Value = response.json().await?;
    println!("{event}");
    if duplicate {
        eprintln!(
            "duplicate: idempotency key {:?} was seen before; the event stored then is printed, nothing new was stored",
            event["idempotency_key"].as_str().unwrap_or_default()
        );
    }
    Ok(())
}

/// What the batch endpoint answers, read for what the publisher needs (the stored events are skipped).
#[derive(Deserialize)]
struct Answer {
    results: Vec<Outcome>,
}

#[derive(Deserialize)]
struct Outcome {
    index: usize,
    #[serde(default)]
    duplicate: bool,
    error: Option<ErrorBody>,
}

/// Why a batch was not taken.
enum Failure {
    /// Worth trying again: no answer, a timeout, 5xx, 429, 408, or an answer that could not be read.
    Transient(String),
    /// The request itself is refused (401, 404, 413...): every batch would be.
    Refused(String),
}

/// The lines a publisher read: where each stands.
#[derive(Debug, Default)]
struct Counts {
    /// Stored (a line whose own key was seen before is a duplicate instead; one with the publisher's
    /// key seen before was stored by an earlier send, and counts here).
    published: u64,
    duplicates: u64,
    /// Refused by the server, or not JSON.
    failed: u64,
    /// Never acknowledged: the publisher gave up on them (kept in the spool when there is one).
    not_sent: u64,
}

struct Publisher {
    api: Api,
    batch: usize,
    flush: Duration,
    retries: u32,
    backoff: Duration,
    /// Prefix of the idempotency keys this run gives lines without one: unique to the run.
    run_id: String,
    next_key: u64,
    counts: Counts,
    progress: Progress,
}

/// A line on its way: its number in the input (`spooled` when an earlier run read it) and the event.
struct Line {
    entry: Entry,
    spooled: bool,
}

impl Line {
    fn name(&self) -> String {
        if self.spooled {
            format!("line {} (from the spool)", self.entry.line)
        } else {
            format!("line {}", self.entry.line)
        }
    }
}

impl Publisher {
    fn new(api: Api, args: &PublishArgs) -> anyhow::Result<Self> {
        Ok(Self {
            api,
            batch: args.batch as usize,
            flush: Duration::from_millis(args.flush_ms),
            retries: args.retries,
            backoff: Duration::from_millis(args.backoff_ms),
            run_id: uuid::Uuid::new_v4().simple().to_string(),
            next_key: 0,
            counts: Counts::default(),
            progress: Progress::new(std::io::stderr().is_terminal()),
        })
    }

    async fn run(mut self, spool_path: Option<&std::path::Path>) -> anyhow::Result<()> {
        let (mut spool, left) = match spool_path {
            Some(path) => {
                let (spool, left) = Spool::open(path)?;
                (Some(spool), left)
            }
            None => (None, Vec::new()),
        };
        if !left.is_empty() {
            self.progress.note(&format!(
                "{} lines an earlier publisher did not get acknowledged are sent first, from {}",
                left.len(),
                spool_path.map(|p| p.display().to_string()).unwrap_or_default()
            ));
        }
        let mut stopped = None;
        let mut left = left.into_iter().map(|entry| Line { entry, spooled: true }).peekable();
        while left.peek().is_some() {
            let batch: Vec<Line> = left.by_ref().take(self.batch).collect();
            if let Err(reason) = self.send(&batch, spool.as_mut()).await? {
                self.give_up(&batch, &reason, spool.as_ref());
                self.counts.not_sent += left.len() as u64;
                stopped = Some(reason);
                break;
            }
        }
        let mut read_up_to = 0;
        if stopped.is_none() {
            (stopped, read_up_to) = self.read_stdin(spool.as_mut()).await?;
        }
        self.progress.clear();
        let Counts { published, duplicates, failed, not_sent } = self.counts;
        eprintln!(
            "{}",
            json!({"published": published, "duplicates": duplicates, "failed": failed, "not_sent": not_sent})
        );
        if let Some(reason) = stopped {
            let kept = match &spool {
                Some(spool) => format!(
                    "; the {} lines not acknowledged are kept in {} and sent first when `eventdeck publish --spool {}` runs again",
                    spool.unsettled(),
                    spool.path().display(),
                    spool.path().display()
                ),
                None => String::new(),
            };
            let unread =
                if read_up_to > 0 { format!("; stdin was not read past line {read_up_to}") } else { String::new() };
            if let Some(spool) = spool {
                spool.close()?;
            }
            bail!("stopped publishing: {reason}{unread}{kept}");
        }
        if let Some(spool) = spool {
            spool.close()?;
        }
        if failed > 0 {
            bail!("{failed} of {} lines were not published", published + duplicates + failed);
        }
        Ok(())
    }

    /// Reads stdin to its end, sending batches as they fill or wait too long. Answers why it stopped
    /// early, if it did, and the last line read then.
    async fn read_stdin(&mut self, mut spool: Option<&mut Spool>) -> anyhow::Result<(Option<String>, u64)> {
        let mut input = read_lines_of_stdin();
        let mut line_no = 0u64;
        let mut pending: Vec<Line> = Vec::with_capacity(self.batch);
        let mut deadline: Option<Instant> = None;
        loop {
            let full = pending.len() >= self.batch;
            let read = if full {
                None
            } else {
                tokio::select! {
                    biased;
                    () = sleep_until(deadline), if deadline.is_some() => None,
                    segment = input.recv() => Some(segment.transpose().context("cannot read stdin")?),
                }
            };
            let at_end = matches!(read, Some(None));
            if let Some(Some(bytes)) = read {
                line_no += 1;
                if let Some(line) = self.accept(line_no, &bytes, spool.as_deref_mut())? {
                    deadline.get_or_insert_with(|| Instant::now() + self.flush);
                    pending.push(line);
                }
                if pending.len() < self.batch {
                    continue;
                }
            }
            if !pending.is_empty() {
                let batch = std::mem::take(&mut pending);
                deadline = None;
                if let Err(reason) = self.send(&batch, spool.as_deref_mut()).await? {
                    self.give_up(&batch, &reason, spool.as_deref());
                    return Ok((Some(reason), line_no));
                }
            }
            if at_end {
                return Ok((None, line_no));
            }
        }
    }

    /// A line read: JSON, given an idempotency key when it has none, written to the spool. `None` for
    /// a blank line, or one that is not JSON (reported).
    fn accept(&mut self, line_no: u64, bytes: &[u8], spool: Option<&mut Spool>) -> anyhow::Result<Option<Line>> {
        let text = match std::str::from_utf8(bytes) {
            Ok(text) => text.trim(),
            Err(error) => {
                self.counts.failed += 1;
                self.progress.note(&format!("line {line_no}: not UTF-8: {error}"));
                return Ok(None);
            }
        };
        if text.is_empty() {
            return Ok(None);
        }
        let mut event = match serde_json::from_str::<Value>(text) {
            Ok(event) => event,
            Err(error) => {
                self.counts.failed += 1;
                self.progress.note(&format!("line {line_no}: not JSON: {error}"));
                return Ok(None);
            }
        };
        let mut auto_key = false;
        if let Value::Object(fields) = &mut event
            && fields.get("idempotency_key").is_none_or(Value::is_null)
        {
            // Fixed before the first send, so every later send of this line is the same event.
            self.next_key += 1;
            fields.insert("idempotency_key".into(), format!("publish-{}-{}", self.run_id, self.next_key).into());
            auto_key = true;
        }
        let entry = match spool {
            Some(spool) => spool.push(line_no, auto_key, event)?,
            None => Entry { id: 0, line: line_no, auto_key, event },
        };
        Ok(Some(Line { entry, spooled: false }))
    }

    /// Sends one batch, trying again after transient failures; settles it in the spool once answered.
    /// `Ok(Err(reason))` when the publisher gives up on it.
    async fn send(&mut self, batch: &[Line], mut spool: Option<&mut Spool>) -> anyhow::Result<Result<(), String>> {
        if let Some(spool) = spool.as_deref_mut() {
            spool.sync()?;
        }
        let body: Vec<&Value> = batch.iter().map(|line| &line.entry.event).collect();
        let body = serde_json::to_vec(&body).context("cannot encode a batch")?;
        let mut wait = self.backoff;
        let mut attempt = 0;
        let answer = loop {
            match self.try_once(&body).await {
                Ok(answer) => break answer,
                Err(Failure::Refused(reason)) => return Ok(Err(reason)),
                Err(Failure::Transient(reason)) if attempt >= self.retries => {
                    return Ok(Err(format!("{reason} (after {attempt} retries)")));
                }
                Err(Failure::Transient(reason)) => {
                    attempt += 1;
                    self.progress.note(&format!(
                        "{} to {}: {reason}; retry {attempt} of {} in {} ms",
                        batch[0].name(),
                        batch[batch.len() - 1].entry.line,
                        self.retries,
                        wait.as_millis()
                    ));
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(MAX_BACKOFF);
                }
            }
        };
        self.settle(batch, answer);
        if let (Some(spool), Some(last)) = (spool, batch.last()) {
            spool.settle(last.entry.id)?;
        }
        self.progress.update(self.counts.published);
        Ok(Ok(()))
    }

    async fn try_once(&self, body: &[u8]) -> Result<Answer, Failure> {
        let request = self
            .api
            .post("/api/v1/events/batch")
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(REQUEST_TIMEOUT)
            .body(body.to_vec());
        let response = request.send().await.map_err(|error| Failure::Transient(describe(&error)))?;
        let status = response.status();
        if status.is_success() {
            return response
                .json::<Answer>()
                .await
                .map_err(|error| Failure::Transient(format!("the answer could not be read: {error}")));
        }
        let body: Value = response.json().await.unwrap_or_default();
        let reason = match body["error"]["message"].as_str() {
            Some(message) => format!("{status}: {message}"),
            None => status.to_string(),
        };
        let transient = status.is_server_error()
            || status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT;
        Err(if transient { Failure::Transient(reason) } else { Failure::Refused(reason) })
    }

    /// Counts a batch's answer and reports the lines refused.
    fn settle(&mut self, batch: &[Line], answer: Answer) {
        for outcome in answer.results {
            let Some(line) = batch.get(outcome.index) else { continue };
            match outcome.error {
                Some(error) => {
                    self.counts.failed += 1;
                    let field = error.field.map(|f| format!(" ({f})")).unwrap_or_default();
                    self.progress.note(&format!("{}: {}{field}: {}", line.name(), error.code, error.message));
                }
                // The publisher's own key seen before: an earlier send of this very line was stored.
                None if outcome.duplicate && !line.entry.auto_key => {
                    self.counts.duplicates += 1;
                    self.progress.note(&format!(
                        "{}: duplicate: its idempotency key was seen before; not stored again",
                        line.name()
                    ));
                }
                None => self.counts.published += 1,
            }
        }
    }

    /// Reports each line of a batch given up on.
    fn give_up(&mut self, batch: &[Line], reason: &str, spool: Option<&Spool>) {
        self.counts.not_sent += batch.len() as u64;
        let fate = if spool.is_some() { "not sent yet (kept in the spool)" } else { "not sent" };
        for line in batch {
            self.progress.note(&format!("{}: {fate}: {reason}", line.name()));
        }
    }
}

fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())
    } else if error.is_connect() {
        "the server did not answer (connection refused or unreachable)".to_owned()
    } else {
        format!("the request failed: {error}")
    }
}

/// Stdin's lines, read on a thread of their own: a blocking read of stdin cannot be cancelled, and on
/// tokio's blocking pool it would hold up the exit of a publisher that stopped early until the next
/// line came. The channel is small, so a slow server still slows the producer.
fn read_lines_of_stdin() -> mpsc::Receiver<std::io::Result<Vec<u8>>> {
    let (sender, receiver) = mpsc::channel(256);
    std::thread::spawn(move || {
        for segment in std::io::stdin().lock().split(b'\n') {
            if sender.blocking_send(segment).is_err() {
                return;
            }
        }
    });
    receiver
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The progress line on a terminal (events sent, rate), redrawn in place; on a pipe nothing. Other
/// messages clear it first, so they are never mixed with it.
struct Progress {
    terminal: bool,
    started: std::time::Instant,
    drawn: Option<std::time::Instant>,
}

impl Progress {
    fn new(terminal: bool) -> Self {
        Self { terminal, started: std::time::Instant::now(), drawn: None }
    }

    fn update(&mut self, sent: u64) {
        if !self.terminal || self.drawn.is_some_and(|at| at.elapsed() < PROGRESS_EVERY) {
            return;
        }
        self.drawn = Some(std::time::Instant::now());
        eprint!("\r\x1b[2K{}", progress_text(sent, self.started.elapsed()));
    }

    fn note(&mut self, message: &str) {
        self.clear();
        eprintln!("{message}");
    }

    fn clear(&mut self) {
        if self.terminal && self.drawn.take().is_some() {
            eprint!("\r\x1b[2K");
        }
    }
}

fn progress_text(sent: u64, elapsed: Duration) -> String {
    let rate = sent as f64 / elapsed.as_secs_f64().max(0.001);
    format!("{sent} events sent, {rate:.0}/s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_says_events_and_rate() {
        assert_eq!(progress_text(5_000, Duration::from_secs(2)), "5000 events sent, 2500/s");
        assert_eq!(progress_text(0, Duration::ZERO), "0 events sent, 0/s");
    }
}
