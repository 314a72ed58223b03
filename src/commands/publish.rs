//! `eventdeck publish`: one event from flags, or JSON lines from stdin posted in batches.

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::client::{Api, send};
use crate::cli::PublishArgs;
use eventdeck::wire::{BatchAnswer, BatchItem, EventCreate};

pub async fn run(args: PublishArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.server)?;
    match args.event_type.clone() {
        Some(event_type) => publish_one(&api, event_type, args).await,
        None => publish_lines(&api, args.batch as usize).await,
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

async fn publish_lines(api: &Api, batch: usize) -> anyhow::Result<()> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let (mut line_no, mut sent, mut duplicates, mut failed) = (0usize, 0usize, 0usize, 0usize);
    let mut pending: Vec<(usize, Value)> = Vec::with_capacity(batch);
    loop {
        let line = lines.next_line().await.context("cannot read stdin")?;
        if let Some(line) = &line {
            line_no += 1;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Value>(line) {
                Ok(value) => pending.push((line_no, value)),
                Err(error) => {
                    eprintln!("line {line_no}: not JSON: {error}");
                    failed += 1;
                }
            }
        }
        if pending.len() >= batch || (line.is_none() && !pending.is_empty()) {
            let body: Vec<&Value> = pending.iter().map(|(_, v)| v).collect();
            let answer: BatchAnswer = send(api.post("/api/v1/events/batch").json(&body)).await?.json().await?;
            for item in &answer.results {
                match item {
                    BatchItem::Failed { index, error } => eprintln!("line {}: {}", pending[*index].0, error.message),
                    BatchItem::Stored { index, duplicate: true, .. } => {
                        eprintln!(
                            "line {}: duplicate: its idempotency key was seen before; not stored again",
                            pending[*index].0
                        );
                    }
                    BatchItem::Stored { .. } => {}
                }
            }
            sent += answer.created;
            duplicates += answer.duplicates;
            failed += answer.failed;
            pending.clear();
        }
        if line.is_none() {
            break;
        }
    }
    eprintln!("{}", json!({"published": sent, "duplicates": duplicates, "failed": failed}));
    if failed > 0 {
        bail!("{failed} of {} events were not published", sent + duplicates + failed);
    }
    Ok(())
}
