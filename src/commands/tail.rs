//! `eventdeck tail [--url URL]`: the live stream as JSON lines on stdout, reconnecting with Last-Event-ID.

use std::time::Duration;

use anyhow::{Context, bail};
use eventsource_client::{self as sse, Client as _};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::cli::TailArgs;

pub async fn run(args: TailArgs) -> anyhow::Result<()> {
    let mut query: Vec<(&str, String)> = Vec::new();
    if let Some(pattern) = &args.event_type {
        query.push(("event_type", pattern.clone()));
    }
    if let Some(source) = &args.source {
        query.push(("event_source", source.clone()));
    }
    let base = args.positional_url.as_deref().unwrap_or(&args.server.url);
    let mut url = format!("{}/api/v1/events/live", base.trim_end_matches('/'));
    if !query.is_empty() {
        url = format!("{url}?{}", serde_urlencoded::to_string(&query)?);
    }
    let mut builder = sse::ClientBuilder::for_url(&url).with_context(|| format!("`{url}` is not a URL"))?.reconnect(
        sse::ReconnectOptions::reconnect(true)
            .retry_initial(true)
            .delay(Duration::from_millis(500))
            .backoff_factor(2)
            .delay_max(Duration::from_secs(10))
            .build(),
    );
    if let Some(key) = &args.server.api_key {
        builder = builder.header("Authorization", &format!("Bearer {key}"))?;
    }
    if let Some(seq) = args.since_seq {
        builder = builder.last_event_id(seq.to_string());
    }
    let client = builder.build();
    let mut stream = client.stream();
    let mut stdout = tokio::io::stdout();
    while let Some(item) = stream.next().await {
        match item {
            Ok(sse::SSE::Event(event)) if event.event_type == "event" => {
                stdout.write_all(event.data.as_bytes()).await?;
                stdout.write_all(b"\n").await?;
                stdout.flush().await?;
            }
            Ok(_) => {}
            Err(sse::Error::UnexpectedResponse(response, _)) => {
                bail!("the server refused the stream with status {}", response.status());
            }
            Err(error) => eprintln!("eventdeck tail: {error:?}; reconnecting"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command, TailArgs};

    fn parse(line: &[&str]) -> Result<TailArgs, String> {
        let cli = Cli::try_parse_from(["eventdeck", "tail"].iter().chain(line)).map_err(|e| e.to_string())?;
        match cli.command {
            Some(Command::Tail(args)) => Ok(args),
            other => Err(format!("parsed as {other:?}")),
        }
    }

    #[test]
    fn the_url_comes_from_the_flag_or_the_old_positional_form() {
        let flag = parse(&["--url", "http://10.0.0.5:8686", "--type", "user.*"]).unwrap();
        assert_eq!((flag.server.url.as_str(), flag.positional_url), ("http://10.0.0.5:8686", None));
        let positional = parse(&["http://10.0.0.6:8686"]).unwrap();
        assert_eq!(positional.positional_url.as_deref(), Some("http://10.0.0.6:8686"));
        assert!(parse(&["http://a:1", "--url", "http://b:2"]).is_err(), "one URL, not two");
    }
}
