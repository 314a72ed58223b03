//! The delivery recorder: writes outcomes in batches (one transaction serves many deliveries), announces
//! new dead letters, refreshes subscriptions that a 410 disabled, and tells the dispatcher when the
//! retries it wrote come due.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{Notify, mpsc};

use crate::domain::{SubscriptionId, Timestamp};
use crate::engine::bus::{Bus, DlqAction, EngineEvent};
use crate::engine::subscriptions::Subscriptions;
use crate::storage::{DeliveryResult, NextStep, Store};

/// Retries the recorder has written, the earliest per subscription, waiting for the dispatcher to pick
/// them up (bounded by the number of subscriptions; the recorder never waits on the dispatcher).
#[derive(Default)]
pub(super) struct RecordedRetries {
    due: std::sync::Mutex<HashMap<SubscriptionId, Timestamp>>,
    pub written: Notify,
}

impl RecordedRetries {
    fn add(&self, retries: impl IntoIterator<Item = (SubscriptionId, Timestamp)>) {
        let mut due = self.due.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for (id, at) in retries {
            let earliest = due.entry(id).or_insert(at);
            *earliest = (*earliest).min(at);
        }
        drop(due);
        self.written.notify_one();
    }

    pub fn take(&self) -> HashMap<SubscriptionId, Timestamp> {
        std::mem::take(&mut *self.due.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }
}

/// Writes delivery outcomes in batches, announces new dead letters, and refreshes subscriptions that a
/// 410 disabled.
pub(super) struct Recorder {
    pub store: Arc<dyn Store>,
    pub bus: Bus,
    pub subscriptions: Arc<Subscriptions>,
    /// Tells the dispatcher when the retries it has written come due.
    pub retries: Arc<RecordedRetries>,
}

impl Recorder {
    pub async fn run(self, mut outcomes: mpsc::Receiver<DeliveryResult>) {
        let mut batch = Vec::new();
        while outcomes.recv_many(&mut batch, 1024).await > 0 {
            self.record(std::mem::take(&mut batch)).await;
        }
    }

    async fn record(&self, finished: Vec<DeliveryResult>) {
        let gone = finished.iter().any(|r| matches!(r.next, NextStep::Gone { .. }));
        let retries: Vec<(SubscriptionId, Timestamp)> = finished
            .iter()
            .filter_map(|r| match r.next {
                NextStep::RetryAt(at) => Some((r.claimed.subscription_id, at)),
                _ => None,
            })
            .collect();
        match self.store.complete_deliveries(finished).await {
            Ok(dead_letters) => {
                for entry in dead_letters {
                    self.bus.publish(EngineEvent::DeadLetter { action: DlqAction::Added, entry: Arc::new(entry) });
                }
            }
            // The claims expire and the deliveries are sent again: at least once.
            Err(error) => {
                tracing::error!(%error, "recording delivery outcomes failed; they will be sent again");
                return;
            }
        }
        if !retries.is_empty() {
            self.retries.add(retries);
        }
        if gone && let Err(error) = self.subscriptions.reload(self.store.as_ref()).await {
            tracing::error!(%error, "reloading subscriptions failed");
        }
    }
}
