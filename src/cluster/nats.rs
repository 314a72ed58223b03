//! The NATS connection: made at start when `[nats] url` is set, kept up by async-nats (which reconnects
//! on its own), used by `nats` processors to publish events.

use bytes::Bytes;

/// A connection to NATS, or the lack of one.
#[derive(Clone, Default)]
pub struct Nats {
    client: Option<async_nats::Client>,
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

    /// Starts connecting to `url` and answers at once; the client keeps trying (and reconnecting) in the
    /// background, so a NATS server that is down at start does not stop eventdeck.
    pub async fn connect(url: &str) -> Result<Self, String> {
        let client = async_nats::ConnectOptions::new()
            .name("eventdeck")
            .retry_on_initial_connect()
            .connect(url)
            .await
            .map_err(|e| format!("cannot connect to NATS at {url}: {e}"))?;
        Ok(Self { client: Some(client) })
    }

    /// `disabled`, `connected` or `disconnected`, as `/health` reports it.
    pub fn state(&self) -> &'static str {
        match &self.client {
            None => "disabled",
            Some(client) => match client.connection_state() {
                async_nats::connection::State::Connected => "connected",
                _ => "disconnected",
            },
        }
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
}
