//! The publisher: lifecycle publications to NATS JetStream (API.md, "Several instances").
//!
//! Stored events are published from the store, not from memory: a cursor row (`publications`, name
//! `events`) says up to which seq JetStream acknowledged them, and it moves only after the acks. A crash
//! between a commit and its publication therefore publishes after the restart; the `Nats-Msg-Id`
//! header (the event id) lets the stream's duplicate window drop what was published twice. The cursor
//! is claimed with a lease, so with several instances on one store one of them publishes at a time and
//! another takes over when its lease ends. Reading "after seq N" relies on seqs being commit-ordered
//! across instances (API.md).
//!
//! What this instance did besides storing (processing outcomes, dead letters, replays started,
//! subscriptions and projections created) is published by this instance from a bounded in-memory queue, with the same
//! ack and message ids; those survive a NATS outage while the process runs, not a crash.
//!
//! A message the server refuses for its size is recorded as a dead letter of kind `publication` and
//! skipped, never retried in a loop. NATS down never holds up ingest: the cursor simply waits.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cluster::nats::{Nats, PublishError, subject_token};
use crate::domain::projection::entity_of;
use crate::domain::{DeadLetter, DeadLetterKind, Event, EventFilter, EventId, EventStatus, Subscription, Timestamp};
use crate::engine::bus::{DlqAction, EngineEvent};
use crate::storage::{EVENTS_PUBLICATION, Store};

/// Stored events read and published per round.
const PAGE: u32 = 500;
/// Publications waiting for their ack at once.
const IN_FLIGHT: usize = 256;
/// Changes (not stored events) waiting to be published, at most; beyond, the oldest are dropped with a
/// warning (subscribers miss that notice; the store has the state).
pub const NOTICES: usize = 4096;
/// Longest wait between rounds when nothing wakes the publisher (another instance's commits, a lease
/// to take over).
const TICK: Duration = Duration::from_millis(250);
/// Shortest time between two rounds, so a burst of commits is published in pages, not event by event.
const SETTLE: Duration = Duration::from_millis(5);
/// Wait before making the stream again after NATS refused it (a conflicting stream).
const SETUP_RETRY_REFUSED: Duration = Duration::from_secs(30);
const SETUP_RETRY: Duration = Duration::from_secs(2);

/// Something this instance did that is published besides the stored events.
#[derive(Debug, Clone)]
pub enum Notice {
    Change(EngineEvent),
    SubscriptionCreated(Arc<Subscription>),
    /// A stream was folded into a projection for the first time, up to `version`.
    ProjectionCreated {
        stream_id: String,
        version: i64,
    },
}

pub struct Publisher {
    pub store: Arc<dyn Store>,
    pub nats: Nats,
    pub stream: String,
    pub prefix: String,
    /// Wakes the publisher when events are stored (here or, through the log follower, elsewhere).
    pub bus: broadcast::Receiver<EngineEvent>,
    pub notices: mpsc::Receiver<Notice>,
    /// How long the cursor claim lasts without renewal.
    pub lease: Duration,
    /// Set when a publication went unanswered: the stream is looked up (and made) again before the
    /// next round, in case it was deleted under us.
    pub stalled: AtomicBool,
}

/// What became of one message: the event it is about (if any), and whether the server took it.
type Outcome = (Option<(EventId, String)>, Result<(), PublishError>);

/// One message to publish.
struct Message {
    subject: String,
    msg_id: String,
    payload: Bytes,
    /// The event it is about, for a dead letter when the server refuses it.
    event: Option<(EventId, String)>,
}

impl Publisher {
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut ready = false;
        let mut next_setup = Instant::now();
        let mut held: Option<(i64, Instant)> = None;
        let mut pending: VecDeque<Notice> = VecDeque::new();
        let mut replays_seen: HashSet<crate::domain::ReplayId> = HashSet::new();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_round = Instant::now();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                notice = self.notices.recv() => match notice {
                    Some(notice) => queue(&mut pending, notice),
                    None => break,
                },
                received = self.bus.recv() => match received {
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => break,
                },
                _ = tick.tick() => {}
            }
            while let Ok(notice) = self.notices.try_recv() {
                queue(&mut pending, notice);
            }
            // One round publishes every event stored so far: the wake-ups queued behind this one are spent.
            while let Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) = self.bus.try_recv() {}
            // Let a burst gather: the next round takes it as one page.
            let since = last_round.elapsed();
            if since < SETTLE {
                tokio::time::sleep(SETTLE - since).await;
            }
            last_round = Instant::now();
            if !self.nats.connected() {
                continue;
            }
            if !ready {
                if Instant::now() < next_setup {
                    continue;
                }
                match self.nats.ensure_stream(&self.stream, &self.prefix).await {
                    Ok(()) => ready = true,
                    Err(PublishError::Refused(message)) => {
                        tracing::error!(stream = %self.stream, "{message}; nothing is published until it is fixed");
                        next_setup = Instant::now() + SETUP_RETRY_REFUSED;
                        continue;
                    }
                    Err(PublishError::Unavailable(message)) => {
                        tracing::warn!(stream = %self.stream, "{message}; trying again");
                        next_setup = Instant::now() + SETUP_RETRY;
                        continue;
                    }
                }
            }
            self.publish_events(&mut held).await;
            self.publish_notices(&mut pending, &mut replays_seen).await;
            if self.stalled.swap(false, Ordering::Relaxed) {
                ready = false;
                next_setup = Instant::now() + SETUP_RETRY;
            }
        }
        if held.is_some()
            && let Err(error) = self.store.release_publication(EVENTS_PUBLICATION, self.store.instance_id()).await
        {
            tracing::warn!(%error, "could not let go of the publication cursor; its lease ends on its own");
        }
    }

    /// Publishes the stored events after the cursor, page by page, while this instance holds the cursor
    /// and NATS acknowledges.
    async fn publish_events(&self, held: &mut Option<(i64, Instant)>) {
        let owner = self.store.instance_id().to_owned();
        loop {
            // Claim (or renew) the cursor when it is not held or half its lease is gone.
            let renew = held.is_none_or(|(_, at)| at.elapsed() > self.lease / 2);
            if renew {
                let now = Timestamp::now();
                let lease_until = now.plus(self.lease);
                match self.store.claim_publication(EVENTS_PUBLICATION, &owner, now, lease_until).await {
                    Ok(Some(seq)) => {
                        // Our own position in memory is never behind the row's (it moves after ours).
                        let seq = held.map_or(seq, |(mine, _)| mine.max(seq));
                        *held = Some((seq, Instant::now()));
                    }
                    Ok(None) => {
                        *held = None;
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot claim the publication cursor; trying again");
                        return;
                    }
                }
            }
            let Some((after, claimed_at)) = *held else { return };
            let page = match self.store.events_after(after, &EventFilter::default(), PAGE).await {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(%error, "cannot read events to publish; trying again");
                    return;
                }
            };
            let Some(last) = page.last().map(|e| e.seq) else { return };
            let full = page.len() == PAGE as usize;
            let seqs: Vec<i64> = page.iter().map(|e| e.seq).collect();
            let messages: Vec<Message> = page.into_iter().map(|event| self.stored(&event)).collect();
            let outcomes = self.publish_all(messages).await;
            let mut done = after;
            for (seq, outcome) in seqs.into_iter().zip(outcomes) {
                if !outcome {
                    break;
                }
                done = seq;
            }
            if done > after {
                match self.store.advance_publication(EVENTS_PUBLICATION, &owner, done).await {
                    Ok(true) => *held = Some((done, claimed_at)),
                    Ok(false) => {
                        tracing::info!("the publication cursor was taken over by another instance");
                        *held = None;
                        return;
                    }
                    Err(error) => {
                        // Published but not recorded: published again later, dropped as duplicates.
                        tracing::warn!(%error, "cannot move the publication cursor; trying again");
                        return;
                    }
                }
            }
            if done < last || !full {
                return;
            }
        }
    }

    /// Publishes `messages` with up to [`IN_FLIGHT`] awaiting their ack; returns, in order, whether
    /// each is done (acknowledged, or refused for good and recorded as a dead letter).
    async fn publish_all(&self, messages: Vec<Message>) -> Vec<bool> {
        let nats = &self.nats;
        let outcomes: Vec<Outcome> = futures::stream::iter(messages)
            .map(|message| async move {
                let result = nats.publish_acked(message.subject, &message.msg_id, message.payload).await;
                (message.event, result)
            })
            .buffered(IN_FLIGHT)
            .collect()
            .await;
        let mut done = Vec::with_capacity(outcomes.len());
        let mut failed = false;
        for (event, result) in outcomes {
            failed = failed
                || match result {
                    Ok(()) => false,
                    Err(PublishError::Refused(reason)) => !self.refused(event, &reason).await,
                    Err(PublishError::Unavailable(reason)) => {
                        // Once per round: the rest of the page failed the same way.
                        if !self.stalled.swap(true, Ordering::Relaxed) {
                            tracing::warn!("{reason}; publishing again once NATS answers");
                        }
                        true
                    }
                };
            done.push(!failed);
        }
        done
    }

    /// Records a message the server will never take; true when recorded (or there is nothing to record).
    async fn refused(&self, event: Option<(EventId, String)>, reason: &str) -> bool {
        tracing::error!("a publication was refused and is skipped: {reason}");
        let Some((event_id, event_type)) = event else { return true };
        let entry = DeadLetter::of_event(
            DeadLetterKind::Publication,
            event_id,
            event_type,
            1,
            format!("not published to NATS: {reason}"),
        );
        match self.store.add_dead_letter(&entry).await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, "cannot record the refused publication; trying again");
                false
            }
        }
    }

    /// Publishes what this instance did, oldest first, until NATS stops answering.
    async fn publish_notices(
        &self,
        pending: &mut VecDeque<Notice>,
        replays_seen: &mut HashSet<crate::domain::ReplayId>,
    ) {
        while let Some(notice) = pending.front() {
            let message = match self.notice(notice, replays_seen).await {
                Ok(Some(message)) => message,
                Ok(None) => {
                    pending.pop_front();
                    continue;
                }
                Err(()) => return,
            };
            let replay = match notice {
                Notice::Change(EngineEvent::Replay(progress)) => Some(progress.replay_id),
                _ => None,
            };
            if self.publish_all(vec![message]).await.first() != Some(&true) {
                return;
            }
            if let Some(replay_id) = replay {
                if replays_seen.len() >= NOTICES {
                    replays_seen.clear();
                }
                replays_seen.insert(replay_id);
            }
            pending.pop_front();
        }
    }

    /// The message a notice is published as; `None` for one that is not published, `Err` when the
    /// store could not be read (try again later).
    async fn notice(
        &self,
        notice: &Notice,
        replays_seen: &HashSet<crate::domain::ReplayId>,
    ) -> Result<Option<Message>, ()> {
        let prefix = &self.prefix;
        Ok(Some(match notice {
            Notice::SubscriptionCreated(subscription) => Message {
                subject: format!("{prefix}.event.subscription.created"),
                msg_id: subscription.subscription_id.to_string(),
                payload: to_bytes(subscription.as_ref()),
                event: None,
            },
            Notice::ProjectionCreated { stream_id, version } => {
                // The projection API reads `type:id` streams; another stream has no entity to name.
                let Some((entity_type, entity_id)) = entity_of(stream_id) else { return Ok(None) };
                Message {
                    subject: format!("{prefix}.event.projection.created"),
                    msg_id: stream_id.clone(),
                    payload: to_bytes(&json!({
                        "entity_type": entity_type,
                        "entity_id": entity_id,
                        "version": version,
                    })),
                    event: None,
                }
            }
            Notice::Change(EngineEvent::Status(change)) => {
                let outcome = match change.status {
                    EventStatus::Processed => "success",
                    EventStatus::Failed => "failed",
                    _ => return Ok(None),
                };
                let event = match self.store.event(change.event_id).await {
                    Ok(Some(event)) => event,
                    // Gone (deleted by retention): nothing to say about it any more.
                    Ok(None) => return Ok(None),
                    Err(error) => {
                        tracing::warn!(%error, "cannot read an event to publish its outcome; trying again");
                        return Err(());
                    }
                };
                let results = match self.store.processing_results(change.event_id).await {
                    Ok(results) => results,
                    Err(error) => {
                        tracing::warn!(%error, "cannot read an event's results to publish its outcome; trying again");
                        return Err(());
                    }
                };
                let status = change.status.as_str();
                Message {
                    subject: format!("{prefix}.event.processed.{outcome}"),
                    msg_id: format!("{}.{status}.{}", change.event_id, event.retry_count),
                    payload: to_bytes(&json!({
                        "event_id": change.event_id,
                        "seq": change.seq,
                        "status": status,
                        "error_message": change.error_message,
                        "results": results,
                    })),
                    event: Some((change.event_id, change.event_type.clone())),
                }
            }
            Notice::Change(EngineEvent::DeadLetter { action: DlqAction::Added, entry }) => Message {
                subject: format!("{prefix}.event.dlq.added"),
                msg_id: entry.dlq_id.to_string(),
                payload: to_bytes(entry.as_ref()),
                event: None,
            },
            Notice::Change(EngineEvent::Replay(progress)) => {
                if replays_seen.contains(&progress.replay_id) {
                    return Ok(None);
                }
                Message {
                    subject: format!("{prefix}.event.replay.started"),
                    msg_id: progress.replay_id.to_string(),
                    payload: to_bytes(progress.as_ref()),
                    event: None,
                }
            }
            Notice::Change(EngineEvent::DeadLetter { action: DlqAction::Removed, .. } | EngineEvent::Stored(_)) => {
                return Ok(None);
            }
        }))
    }

    fn stored(&self, event: &Event) -> Message {
        Message {
            subject: format!("{}.event.stored.{}", self.prefix, subject_token(&event.event_type)),
            msg_id: event.event_id.to_string(),
            payload: to_bytes(event),
            event: Some((event.event_id, event.event_type.clone())),
        }
    }
}

fn queue(pending: &mut VecDeque<Notice>, notice: Notice) {
    if pending.len() >= NOTICES {
        pending.pop_front();
        tracing::warn!("NATS publications are behind; the oldest change notice is dropped (the store has it)");
    }
    pending.push_back(notice);
}

fn to_bytes(value: &impl serde::Serialize) -> Bytes {
    // Domain types always serialise.
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}
