//! The announcer: writes what this instance changed (status, dead-letter and replay changes) to the
//! change log in batches, for the other instances sharing the store to show on their live streams.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::storage::Store;

/// Changes written per insert at most.
const BATCH: usize = 500;

/// Writes changes until `shutdown`, then what is still queued.
pub async fn run(store: Arc<dyn Store>, mut changes: mpsc::Receiver<String>, shutdown: CancellationToken) {
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            received = changes.recv_many(&mut batch, BATCH) => if received == 0 { break },
            () = shutdown.cancelled() => {
                changes.close();
                while changes.recv_many(&mut batch, BATCH).await > 0 {
                    write(store.as_ref(), &mut batch).await;
                }
                break;
            }
        }
        write(store.as_ref(), &mut batch).await;
    }
}

async fn write(store: &dyn crate::storage::Store, batch: &mut Vec<String>) {
    if let Err(error) = store.record_changes(batch).await {
        // Other instances miss these live frames; everything they stand for is stored.
        tracing::warn!(%error, changes = batch.len(), "could not write changes to the change log");
    }
    batch.clear();
}
