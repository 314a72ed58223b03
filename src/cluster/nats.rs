//! The NATS connection: one per process, made at start when `[nats] url` is set and kept up by
//! async-nats (which reconnects on its own). It serves `nats` processors (plain publishes), the
//! lifecycle publisher (JetStream publishes that wait for the server's ack) and the live feed between
//! instances (plain publishes and a subscription), and reports its state to `/health`, `/metrics` and
//! the console.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;

/// The shortest duplicate window the stream may have: a publication repeated after a crash is dropped
/// by JetStream when it arrives within it.
pub const MIN_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// How long a JetStream publish may wait for its ack.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// What `[nats]` says, for the engine.
#[derive(Clone, PartialEq)]
pub struct NatsOptions {
    pub url: String,
    pub credentials_file: Option<PathBuf>,
    pub token: Option<String>,
    /// The JetStream stream publications go to.
    pub stream: String,
    /// First token(s) of every published subject.
    pub subject_prefix: String,
    /// Whether lifecycle publications are made.
    pub publish: bool,
}

impl std::fmt::Debug for NatsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsOptions")
            .field("url", &self.url)
            .field("credentials_file", &self.credentials_file)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .field("stream", &self.stream)
            .field("subject_prefix", &self.subject_prefix)
            .field("publish", &self.publish)
            .finish()
    }
}

/// Whether `name` can name a JetStream stream (no whitespace, `.`, `*`, `>`, path separators).
pub fn valid_stream_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Whether `prefix` is one or more literal subject tokens (`a` or `a.b`), so `<prefix>.>` is a subject.
pub fn valid_subject_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix
            .split('.')
            .all(|token| !token.is_empty() && token.chars().all(|c| c.is_ascii_graphic() && c != '*' && c != '>'))
}

/// A subject token made from free text (an event type, a category): NATS splits subjects at dots and
/// treats `*` and `>` as wildcards, so those, and whitespace, become `_`. Dots are kept: `user.created`
/// stays two tokens, which `eventdeck.event.stored.user.>` can match.
pub fn subject_token(text: &str) -> String {
    let token: String =
        text.chars().map(|c| if c.is_ascii_graphic() && c != '*' && c != '>' { c } else { '_' }).collect();
    let token = token.split('.').map(|part| if part.is_empty() { "_" } else { part }).collect::<Vec<_>>().join(".");
    if token.is_empty() { "_".to_owned() } else { token }
}

/// Why a publication failed: for good (this message will never be taken) or for now (retry later).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Unavailable(String),
}

/// A connection to NATS, or the lack of one. Cheap to clone: clones share the one connection.
#[derive(Clone, Default)]
pub struct Nats {
    client: Option<async_nats::Client>,
    jetstream: Option<jetstream::Context>,
}

impl std::fmt::Debug for Nats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nats").field("state", &self.state()).finish()
    }
}

impl Nats {
    /// No NATS: `nats` processors fail with a clear error, health says `disabled`.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Starts connecting and answers at once; the client keeps trying (and reconnecting) in the
    /// background, so a NATS server that is down at start does not stop eventdeck: it is a warning and
    /// a `disconnected` state. Fails only on what retrying cannot fix (an unreadable credentials file).
    pub async fn connect(options: &NatsOptions) -> Result<Self, String> {
        let mut connect = async_nats::ConnectOptions::new().name("eventdeck").retry_on_initial_connect();
        if let Some(path) = &options.credentials_file {
            connect = connect.credentials_file(path).await.map_err(|e| {
                format!(
                    "nats.credentials_file: cannot read {}: {e}: give the path of a NATS .creds file",
                    path.display()
                )
            })?;
        }
        if let Some(token) = &options.token {
            connect = connect.token(token.clone());
        }
        let client = connect
            .connect(options.url.as_str())
            .await
            .map_err(|e| format!("cannot connect to NATS at {}: {e}", options.url))?;
        let context = jetstream::ContextBuilder::new().timeout(ACK_TIMEOUT).build(client.clone());
        let nats = Self { client: Some(client), jetstream: Some(context) };
        // Give a reachable server a moment, so the first health check says `connected`.
        for _ in 0..20 {
            if nats.connected() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        if !nats.connected() {
            tracing::warn!(url = %options.url, "NATS is not reachable yet; eventdeck runs on and keeps trying");
        }
        Ok(nats)
    }

    /// `disabled`, `connected` or `disconnected`, as `/health` reports it.
    pub fn state(&self) -> &'static str {
        match &self.client {
            None => "disabled",
            Some(_) if self.connected() => "connected",
            Some(_) => "disconnected",
        }
    }

    pub fn enabled(&self) -> bool {
        self.client.is_some()
    }

    pub fn connected(&self) -> bool {
        self.client.as_ref().is_some_and(|client| client.connection_state() == async_nats::connection::State::Connected)
    }

    /// The largest message the server takes; `None` before the first connection.
    pub fn max_payload(&self) -> Option<usize> {
        let client = self.client.as_ref()?;
        Some(client.server_info().max_payload).filter(|max| *max > 0)
    }

    /// Publishes `payload` to `subject` and waits until the server has it (a flush), so a success
    /// means the message left this process.
    pub async fn publish(&self, subject: &str, payload: Bytes) -> Result<(), String> {
        let Some(client) = &self.client else {
            return Err(
                "NATS is not configured: set [nats] url (e.g. nats://127.0.0.1:4222) to use nats processors".to_owned()
            );
        };
        if client.connection_state() != async_nats::connection::State::Connected {
            return Err("NATS is disconnected; the event will be retried".to_owned());
        }
        client.publish(subject.to_owned(), payload).await.map_err(|e| format!("NATS publish failed: {e}"))?;
        client.flush().await.map_err(|e| format!("NATS flush failed: {e}"))
    }

    /// Publishes `payload` to `subject` with core NATS: no flush, no ack, nothing kept when NATS is down
    /// (it fails at once instead), for messages that only make something faster (the live feed between
    /// instances). async-nats writes it out on its own within moments.
    pub async fn publish_unacked(&self, subject: &str, payload: Bytes) -> Result<(), String> {
        let Some(client) = &self.client else { return Err("NATS is not configured".to_owned()) };
        if client.connection_state() != async_nats::connection::State::Connected {
            return Err("NATS is disconnected".to_owned());
        }
        client.publish(subject.to_owned(), payload).await.map_err(|e| format!("NATS publish failed: {e}"))
    }

    /// Subscribes to `subject` (wildcards allowed) with core NATS. The subscription is made again by
    /// async-nats after a reconnection; messages sent while this process was away are not kept.
    pub async fn subscribe(&self, subject: &str) -> Result<async_nats::Subscriber, String> {
        let Some(client) = &self.client else { return Err("NATS is not configured".to_owned()) };
        client
            .subscribe(subject.to_owned())
            .await
            .map_err(|e| format!("cannot subscribe to NATS subject {subject}: {e}"))
    }

    /// Makes sure stream `name` exists on `<prefix>.>` with a duplicate window of at least
    /// [`MIN_DUPLICATE_WINDOW`]: created when missing; one that exists with other subjects or a
    /// shorter window is left alone and reported, naming what differs.
    pub async fn ensure_stream(&self, name: &str, prefix: &str) -> Result<(), PublishError> {
        let context = self.context()?;
        let subject = format!("{prefix}.>");
        match context.get_stream(name).await {
            Ok(stream) => {
                let config = &stream.cached_info().config;
                let mut differs = Vec::new();
                if !config.subjects.iter().any(|s| *s == subject || s == ">") {
                    differs.push(format!("its subjects are {:?}, not [\"{subject}\"]", config.subjects));
                }
                if config.duplicate_window < MIN_DUPLICATE_WINDOW {
                    differs.push(format!(
                        "its duplicate window is {:?}, shorter than the {:?} eventdeck needs to drop repeats",
                        config.duplicate_window, MIN_DUPLICATE_WINDOW
                    ));
                }
                if differs.is_empty() {
                    return Ok(());
                }
                Err(PublishError::Refused(format!(
                    "NATS stream `{name}` exists with a conflicting config: {}; change the stream (e.g. `nats stream \
                     edit {name}`) or set [nats] stream to another name",
                    differs.join("; ")
                )))
            }
            Err(error) => match error.kind() {
                GetStreamErrorKind::JetStream(js) if js.error_code() == ErrorCode::STREAM_NOT_FOUND => {
                    let config = jetstream::stream::Config {
                        name: name.to_owned(),
                        subjects: vec![subject.clone()],
                        duplicate_window: MIN_DUPLICATE_WINDOW,
                        ..Default::default()
                    };
                    context.create_stream(config).await.map_err(|e| {
                        PublishError::Refused(format!(
                            "cannot create NATS stream `{name}` on `{subject}`: {e} (another stream may already take \
                             these subjects: set [nats] subject_prefix or [nats] stream)"
                        ))
                    })?;
                    tracing::info!(stream = name, subjects = %subject, "created the NATS stream for publications");
                    Ok(())
                }
                _ => Err(PublishError::Unavailable(format!("cannot look up NATS stream `{name}`: {error}"))),
            },
        }
    }

    /// Publishes to JetStream with `Nats-Msg-Id: msg_id` and returns once the server acknowledged it
    /// (a repeat within the duplicate window is acknowledged too, and not stored twice).
    pub async fn publish_acked(&self, subject: String, msg_id: &str, payload: Bytes) -> Result<(), PublishError> {
        let context = self.context()?;
        if let Some(max) = self.max_payload()
            && payload.len() > max
        {
            return Err(PublishError::Refused(format!(
                "the message is {} bytes, over the NATS server's max_payload of {max} bytes",
                payload.len()
            )));
        }
        let message = PublishMessage::build().payload(payload).message_id(msg_id);
        let ack = context
            .send_publish(subject, message)
            .await
            .map_err(|e| PublishError::Unavailable(format!("NATS publish failed: {e}")))?;
        ack.await.map_err(|e| PublishError::Unavailable(format!("NATS did not acknowledge the publication: {e}")))?;
        Ok(())
    }

    /// The JetStream context, for consumers.
    pub fn jetstream(&self) -> Option<&jetstream::Context> {
        self.jetstream.as_ref()
    }

    fn context(&self) -> Result<&jetstream::Context, PublishError> {
        if !self.connected() {
            return Err(PublishError::Unavailable("NATS is disconnected".to_owned()));
        }
        self.jetstream.as_ref().ok_or_else(|| PublishError::Unavailable("NATS is not configured".to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_become_subject_tokens() {
        assert_eq!(subject_token("user.created"), "user.created");
        assert_eq!(subject_token("a b*c>"), "a_b_c_");
        assert_eq!(subject_token("a..b"), "a._.b");
        assert_eq!(subject_token(""), "_");
    }

    #[test]
    fn stream_names_and_prefixes_are_checked() {
        assert!(valid_stream_name("EVENTDECK"));
        assert!(!valid_stream_name("a.b"));
        assert!(!valid_stream_name(""));
        assert!(valid_subject_prefix("eventdeck"));
        assert!(valid_subject_prefix("acme.eventdeck"));
        assert!(!valid_subject_prefix("a.*"));
        assert!(!valid_subject_prefix("a..b"));
        assert!(!valid_subject_prefix("a b"));
    }
}
