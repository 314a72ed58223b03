//! How a group of new events becomes stored events, the same on every backend: the backend looks up
//! what the group's given ids, idempotency keys and streams already hold ([`Lookups`], [`Known`]), then
//! [`assign`] decides each event's fate in order (duplicate, version conflict, or created with the
//! next seq and stream version), seeing the events before it in the group as the database will.

use std::collections::HashMap;

use super::Appended;
use crate::domain::{Event, EventId, EventStatus, NewEvent, Timestamp};

/// An idempotency key with its tenant (`""` without one): keys are unique per tenant.
pub(super) type Key = (String, String);

/// What a backend must look up before assigning a group.
#[derive(Debug, Default)]
pub(super) struct Lookups {
    /// Every distinct id the group's events were given before the commit.
    pub ids: Vec<EventId>,
    /// Every distinct idempotency key of the group.
    pub keys: Vec<Key>,
    /// Every distinct stream of the group.
    pub streams: Vec<String>,
}

impl Lookups {
    pub fn of(events: &[NewEvent]) -> Self {
        let mut ids: Vec<EventId> = events.iter().filter_map(|e| e.event_id).collect();
        ids.sort();
        ids.dedup();
        let mut keys: Vec<Key> = events.iter().filter_map(key_of).collect();
        keys.sort();
        keys.dedup();
        let mut streams: Vec<String> = events.iter().filter_map(|e| e.stream_id.clone()).collect();
        streams.sort();
        streams.dedup();
        Self { ids, keys, streams }
    }
}

/// What the store holds for a group's lookups.
#[derive(Debug, Default)]
pub(super) struct Known {
    /// The stored event of each given id already taken.
    pub events_by_id: HashMap<EventId, Event>,
    /// The stored event of each key already taken.
    pub events_by_key: HashMap<Key, Event>,
    /// Each stream's current version; a stream missing here has none yet (0).
    pub versions: HashMap<String, i64>,
}

fn key_of(event: &NewEvent) -> Option<Key> {
    event.idempotency_key.as_ref().map(|key| (event.tenant_id.clone().unwrap_or_default(), key.clone()))
}

/// Decides each event of the group in order, numbering those created from `next_seq`.
pub(super) fn assign(events: Vec<NewEvent>, mut known: Known, next_seq: i64, created_at: Timestamp) -> Vec<Appended> {
    let mut seq = next_seq;
    let mut out: Vec<Appended> = Vec::with_capacity(events.len());
    for new in events {
        // An id that is stored already: the same event again (a JetStream message delivered twice).
        if let Some(stored) = new.event_id.and_then(|id| known.events_by_id.get(&id)) {
            out.push(Appended::Duplicate(stored.clone()));
            continue;
        }
        let key = key_of(&new);
        if let Some(stored) = key.as_ref().and_then(|key| known.events_by_key.get(key)) {
            out.push(Appended::Duplicate(stored.clone()));
            continue;
        }
        let stream_version = match &new.stream_id {
            None => None,
            Some(stream_id) => {
                let current = known.versions.get(stream_id).copied().unwrap_or(0);
                if let Some(expected) = new.expected_version.filter(|&expected| expected != current) {
                    out.push(Appended::VersionConflict { stream_id: stream_id.clone(), expected, actual: current });
                    continue;
                }
                known.versions.insert(stream_id.clone(), current + 1);
                Some(current + 1)
            }
        };
        let (status, processed_at) = match new.skip_processing {
            true => (EventStatus::Processed, Some(created_at)),
            false => (EventStatus::Pending, None),
        };
        let event = Event {
            event_id: new.event_id.unwrap_or_else(EventId::new_v7),
            seq,
            event_type: new.event_type,
            event_source: new.event_source,
            event_category: new.event_category,
            user_id: new.user_id,
            tenant_id: new.tenant_id,
            stream_id: new.stream_id,
            stream_version,
            data: new.data,
            metadata: new.metadata,
            context: new.context,
            correlation_id: new.correlation_id,
            idempotency_key: new.idempotency_key,
            status,
            retry_count: 0,
            error_message: None,
            timestamp: new.timestamp,
            created_at,
            processed_at,
        };
        // Later events of the group with this id or key are duplicates of this one.
        if new.event_id.is_some() {
            known.events_by_id.insert(event.event_id, event.clone());
        }
        if let Some(key) = key {
            known.events_by_key.insert(key, event.clone());
        }
        out.push(Appended::Created(event));
        seq += 1;
    }
    out
}

/// The events a group created.
pub(super) fn created(appended: &[Appended]) -> Vec<&Event> {
    appended.iter().filter_map(|a| if let Appended::Created(e) = a { Some(e) } else { None }).collect()
}

/// What these events add to the statistics counters: (dimension, key, count), one per distinct key.
pub(super) fn counts(events: &[&Event]) -> Vec<(&'static str, String, i64)> {
    let mut deltas: HashMap<(&'static str, String), i64> = HashMap::new();
    for event in events {
        let mut bump = |dimension, key: String| *deltas.entry((dimension, key)).or_default() += 1;
        bump("type", event.event_type.clone());
        bump("source", event.event_source.as_str().to_owned());
        bump("category", event.event_category.as_str().to_owned());
        bump("status", event.status.as_str().to_owned());
        bump("day", event.timestamp.to_datetime().format("%Y-%m-%d").to_string());
        if let Some(user) = &event.user_id {
            bump("user", user.clone());
        }
    }
    deltas.into_iter().map(|((dimension, key), count)| (dimension, key, count)).collect()
}
