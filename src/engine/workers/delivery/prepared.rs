//! Events as deliveries need them: read from the store once and serialised once, however many lanes hold
//! a delivery of them (ten subscriptions matching an event share one read and one serialisation).

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use crate::domain::Event;
use crate::storage::{Error, Store};

/// A stored event with its JSON, ready to be put in delivery bodies.
pub(super) struct PreparedEvent {
    pub event: Event,
    /// `event` as JSON.
    pub json: String,
}

impl PreparedEvent {
    pub fn new(event: Event) -> Self {
        // An Event always serialises; an empty body would fail the attempt loudly rather than silently.
        let json = serde_json::to_string(&event).unwrap_or_default();
        Self { event, json }
    }
}

/// The prepared events that some claimed delivery still holds, by seq. Entries live as long as a delivery
/// holds them, so the cache is bounded by what the lanes hold.
#[derive(Default)]
pub(super) struct EventCache {
    by_seq: HashMap<i64, Weak<PreparedEvent>>,
}

/// How many dead entries the cache tolerates before it sweeps them out.
const SWEEP_ABOVE: usize = 4096;

impl EventCache {
    /// An event read elsewhere (by the fan-out), ready for its deliveries and kept for later claims.
    pub fn prepare(&mut self, event: Event) -> Arc<PreparedEvent> {
        let prepared = Arc::new(PreparedEvent::new(event));
        self.by_seq.insert(prepared.event.seq, Arc::downgrade(&prepared));
        prepared
    }

    /// The events with these seqs, reading from the store only those no delivery holds yet. Events that
    /// no longer exist are left out.
    pub async fn get(&mut self, store: &dyn Store, seqs: &[i64]) -> Result<HashMap<i64, Arc<PreparedEvent>>, Error> {
        let mut found = HashMap::with_capacity(seqs.len());
        let mut missing = Vec::new();
        for &seq in seqs {
            match self.by_seq.get(&seq).and_then(Weak::upgrade) {
                Some(prepared) => {
                    found.insert(seq, prepared);
                }
                None if !found.contains_key(&seq) => missing.push(seq),
                None => {}
            }
        }
        missing.sort_unstable();
        missing.dedup();
        if self.by_seq.len() > SWEEP_ABOVE {
            self.by_seq.retain(|_, prepared| prepared.strong_count() > 0);
        }
        for event in store.events_by_seq(&missing).await? {
            let prepared = self.prepare(event);
            found.insert(prepared.event.seq, prepared);
        }
        Ok(found)
    }
}
