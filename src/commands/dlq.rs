//! `eventdeck dlq list|retry|discard`: the dead-letter queue of a server, through [`RemoteClient`].

use std::collections::HashMap;
use std::fmt::Write as _;

use anyhow::{Context, bail};

use crate::cli::{DlqArgs, DlqCommand, DlqDiscardArgs, DlqKindArg, DlqListArgs, DlqRetryArgs, ServerArgs};
use eventdeck::domain::delivery::{DlqQuery, DlqSelector};
use eventdeck::domain::{DeadLetter, DeadLetterKind, DlqId, ProcessorId, SubscriptionId};
use eventdeck::remote::RemoteClient;
use eventdeck::service::{self, EventService};
use uuid::Uuid;

pub async fn run(args: DlqArgs) -> anyhow::Result<()> {
    match args.command {
        DlqCommand::List(args) => list(args).await,
        DlqCommand::Retry(args) => retry(args).await,
        DlqCommand::Discard(args) => discard(args).await,
    }
}

/// A client of the server the flags name.
pub fn client(server: &ServerArgs) -> anyhow::Result<RemoteClient> {
    Ok(RemoteClient::connect(&server.url, server.api_key.clone())?)
}

/// The message a person reads for a service error. An unreachable server says so itself; it is not
/// a storage failure.
pub fn explain(error: service::Error) -> anyhow::Error {
    match error {
        service::Error::Unavailable(message) if message.starts_with("the server at ") => anyhow::anyhow!(message),
        other => other.into(),
    }
}

fn parse_id<T: std::str::FromStr>(flag: &str, text: &str) -> anyhow::Result<T> {
    text.trim().parse().map_err(|_| anyhow::anyhow!("{flag}: `{text}` is not an id (ids are UUIDs)"))
}

async fn list(args: DlqListArgs) -> anyhow::Result<()> {
    let query = DlqQuery {
        kind: args.kind.map(|kind| match kind {
            DlqKindArg::Delivery => DeadLetterKind::Delivery,
            DlqKindArg::Processing => DeadLetterKind::Processing,
        }),
        subscription_id: args
            .subscription
            .as_deref()
            .map(|id| parse_id::<SubscriptionId>("--subscription", id))
            .transpose()?,
        processor_id: args.processor.as_deref().map(|id| parse_id::<ProcessorId>("--processor", id)).transpose()?,
        limit: args.limit,
        offset: args.offset,
    };
    let client = client(&args.server)?;
    let page = client.dead_letters(query).await.map_err(explain)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&page).context("cannot print the answer as JSON")?);
    } else if page.entries.is_empty() {
        println!("no dead letters{}", if page.total > 0 { " on this page" } else { "" });
    } else {
        print!("{}", table(&page.entries, &names(&client).await));
        let shown = page.entries.len() as u64;
        println!(
            "{shown} of {} entries{}",
            page.total,
            if args.offset + shown < page.total { " (more with --offset)" } else { "" }
        );
    }
    Ok(())
}

/// Longest last-error text a table row shows.
const ERROR_WIDTH: usize = 60;

/// Subscription and processor names by id, for the TARGET column. Best effort: without them the
/// table shows ids.
async fn names(client: &RemoteClient) -> HashMap<Uuid, String> {
    let (subscriptions, processors) = tokio::join!(client.subscriptions(), client.processors());
    let subscriptions =
        subscriptions.unwrap_or_default().into_iter().map(|s| (s.subscription_id.0, s.subscriber_name.clone()));
    let processors = processors.unwrap_or_default().into_iter().map(|p| (p.processor_id.0, p.processor_name.clone()));
    subscriptions.chain(processors).collect()
}

/// The entries as an aligned text table, one row each; targets by name when `names` has them.
fn table(entries: &[DeadLetter], names: &HashMap<Uuid, String>) -> String {
    let headers = ["DLQ ID", "KIND", "EVENT TYPE", "TARGET", "ATTEMPTS", "LAST FAILED", "LAST ERROR"];
    let rows: Vec<[String; 7]> = entries
        .iter()
        .map(|entry| {
            let name = |id: Uuid| names.get(&id).cloned().unwrap_or_else(|| id.to_string());
            let target = match (entry.subscription_id, entry.processor_id) {
                (Some(id), _) => format!("subscription {}", name(id.0)),
                (None, Some(id)) => format!("processor {}", name(id.0)),
                (None, None) => "-".to_owned(),
            };
            let error = match (&entry.last_error, entry.last_status_code) {
                (Some(error), Some(code)) => format!("HTTP {code}: {error}"),
                (Some(error), None) => error.clone(),
                (None, Some(code)) => format!("HTTP {code}"),
                (None, None) => "-".to_owned(),
            };
            [
                entry.dlq_id.to_string(),
                entry.kind.as_str().to_owned(),
                entry.event_type.clone(),
                target,
                entry.attempts.to_string(),
                entry.last_failed_at.to_string(),
                truncate(&error.replace(['\n', '\r'], " "), ERROR_WIDTH),
            ]
        })
        .collect();
    let mut widths = headers.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                // Writing to a String cannot fail.
                let _ = write!(text, "{cell:<width$}  ");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&headers);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
    out
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

async fn retry(args: DlqRetryArgs) -> anyhow::Result<()> {
    let (selector, asked) = if args.all {
        (DlqSelector::All, None)
    } else if let Some(id) = &args.subscription {
        (DlqSelector::Subscription(parse_id("--subscription", id)?), None)
    } else {
        let ids = args.ids.iter().map(|id| parse_id::<DlqId>("ID", id)).collect::<anyhow::Result<Vec<_>>>()?;
        let asked = ids.len();
        (DlqSelector::Ids(ids), Some(asked))
    };
    let retried = client(&args.server)?.retry_dead_letters(selector).await.map_err(explain)?;
    println!("retried {retried} dead letter{}", if retried == 1 { "" } else { "s" });
    if let Some(asked) = asked.filter(|asked| retried < *asked) {
        bail!("{} of the {asked} ids given were not in the dead-letter queue", asked - retried);
    }
    Ok(())
}

async fn discard(args: DlqDiscardArgs) -> anyhow::Result<()> {
    let ids = args.ids.iter().map(|id| parse_id::<DlqId>("ID", id)).collect::<anyhow::Result<Vec<_>>>()?;
    let client = client(&args.server)?;
    let mut failed = 0;
    for id in &ids {
        match client.discard_dead_letter(*id).await {
            Ok(()) => println!("discarded {id}"),
            Err(error) => {
                failed += 1;
                eprintln!("{id}: {:#}", explain(error));
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} dead letters were not discarded", ids.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventdeck::domain::{EventId, Timestamp};

    #[test]
    fn table_aligns_columns_and_shortens_long_errors() {
        let at = Timestamp::parse("2026-01-02T03:04:05Z").unwrap();
        let entry = |error: &str| DeadLetter {
            dlq_id: DlqId::new_v7(),
            kind: DeadLetterKind::Delivery,
            event_id: EventId::new_v7(),
            event_type: "order.paid".into(),
            subscription_id: Some(SubscriptionId::new_v7()),
            processor_id: None,
            delivery_id: None,
            attempts: 4,
            last_status_code: Some(500),
            last_error: Some(error.into()),
            first_failed_at: at,
            last_failed_at: at,
            created_at: at,
            attempt_history: None,
        };
        let (named, unnamed) = (entry("boom"), entry(&"x".repeat(200)));
        let unnamed_id = unnamed.subscription_id.unwrap();
        let names = HashMap::from([(named.subscription_id.unwrap().0, "billing".to_owned())]);
        let text = table(&[named, unnamed], &names);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("DLQ ID"));
        let column = lines[0].find("KIND").unwrap();
        assert_eq!(&lines[1][column..column + 8], "delivery");
        assert!(lines[1].ends_with("HTTP 500: boom"), "{}", lines[1]);
        assert!(lines[1].contains("subscription billing  "), "{}", lines[1]);
        assert!(lines[2].contains(&format!("subscription {unnamed_id}")), "without a name, the id: {}", lines[2]);
        assert!(lines[2].ends_with('…') && !lines[2].contains(&"x".repeat(ERROR_WIDTH)), "{}", lines[2]);
    }
}
