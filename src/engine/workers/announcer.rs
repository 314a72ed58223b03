//! The announcer: writes what this instance changed (status, dead-letter and replay changes) to the
//! change log in batches, for the other instances sharing the store to show on their live streams, and
//! (with the live link) sends each batch to them over NATS with its change-log ids right after.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::live_link::{LiveChange, LiveOutbox, Outgoing};
use crate::storage::Store;

/// Changes written per insert at most.
const BATCH: usize = 500;

/// Writes changes until `shutdown`, then what is still queued.
pub async fn run(
    store: Arc<dyn Store>,
    mut changes: mpsc::Receiver<String>,
    live: Option<LiveOutbox>,
    shutdown: CancellationToken,
) {
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            received = changes.recv_many(&mut batch, BATCH) => if received == 0 { break },
            () = shutdown.cancelled() => {
                changes.close();
                while changes.recv_many(&mut batch, BATCH).await > 0 {
                    write(store.as_ref(), &mut batch, live.as_ref()).await;
                }
                break;
            }
        }
        write(store.as_ref(), &mut batch, live.as_ref()).await;
    }
}

async fn write(store: &dyn crate::storage::Store, batch: &mut Vec<String>, live: Option<&LiveOutbox>) {
    match store.record_changes(batch).await {
        // Sent only once recorded: the others relay by id and read any gap from the change log.
        Ok(ids) => {
            if let Some(live) = live {
                let changes = ids.into_iter().zip(batch.drain(..)).map(|(id, body)| LiveChange { id, body }).collect();
                live.offer(Outgoing::Changes(changes));
            }
        }
        // Other instances miss these live frames; everything they stand for is stored.
        Err(error) => tracing::warn!(%error, changes = batch.len(), "could not write changes to the change log"),
    }
    batch.clear();
}
