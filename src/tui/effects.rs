//! Effects: the calls to the service that `App::update` asks for. Each runs on its own task on the
//! main runtime and comes back as an [`Action`] through the console's bounded channel. The live feed
//! runs as one long task that batches items and resumes after errors.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::action::{Action, EventDetail, FeedBatch, Response, SubscriptionDetail};
use super::popups::replay::{MAX_IDS, ReplayPlan};
use crate::domain::delivery::{DlqGroupQuery, DlqQuery, DlqSelector};
use crate::domain::replay::ReplaySelection;
use crate::domain::subscription::SubscriptionPatch;
use crate::domain::{
    DeadLetterKind, DlqId, EventFilter, EventId, EventQuery, Order, ProcessorId, ProjectionAt, ReplayId, ReplayRequest,
    ReplayStarted, ReplayStatus, Subscription, SubscriptionId, Timestamp,
};
use crate::service::{Error, EventService, Feed, FeedItem};

/// Events the Live pane starts with, before new ones arrive.
const BACKFILL: u32 = 200;
/// How long the feed task gathers items into one batch after the first.
const BATCH_WINDOW: Duration = Duration::from_millis(30);
/// Most items in one batch; older ones are left out (the ring buffer would drop them anyway).
const MAX_BATCH: usize = 4096;
/// Waits before the feed is opened again after an error: doubled each time, up to the last.
const FEED_RETRY: Duration = Duration::from_secs(1);
const FEED_RETRY_MAX: Duration = Duration::from_secs(10);
/// Recent events looked at for a subscription's latest attempts, and how many of them are asked.
const RECENT_EVENTS: u32 = 200;
const RECENT_MATCHES: usize = 10;
/// Calls made at once by one effect that fans out.
const FAN_OUT: usize = 4;

/// A call the console wants made.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Replaces the live feed (and loads the latest matching events first).
    StartFeed {
        generation: u64,
        filter: EventFilter,
    },
    Statistics,
    Health,
    /// The instances sharing the store, for the status bar.
    Cluster,
    Query {
        request: u64,
        query: EventQuery,
    },
    EventDetail(EventId),
    DeadLetters {
        request: u64,
        query: DlqQuery,
    },
    DeadLetter(DlqId),
    DeadLetterGroups {
        request: u64,
        query: DlqGroupQuery,
    },
    RetryDeadLetters(DlqSelector),
    DiscardDeadLetter(DlqId),
    DiscardDeadLetters(DlqSelector),
    Processors,
    ToggleProcessor {
        id: ProcessorId,
        enabled: bool,
    },
    Subscriptions,
    UpdateSubscription {
        id: SubscriptionId,
        enabled: bool,
    },
    DeleteSubscription(SubscriptionId),
    SubscriptionDetail(Arc<Subscription>),
    /// Resolves the selection (collecting ids when needed) and runs the dry run.
    PrepareReplay(ReplayPlan),
    /// Counts what an archive before this time would take.
    CountArchivable(Timestamp),
    Archive(Timestamp),
    StartReplay(ReplayRequest),
    ReplayProgress(ReplayId),
    Streams {
        request: u64,
        prefix: String,
        limit: u32,
    },
    StreamEvents {
        request: u64,
        stream_id: String,
        from_version: i64,
        limit: u32,
    },
    StreamState {
        request: u64,
        entity_type: String,
        entity_id: String,
        version: i64,
    },
    StreamAt {
        request: u64,
        entity_type: String,
        entity_id: String,
        at: Timestamp,
    },
    /// Writes every event matching `filter` to `path`, one JSON a line, oldest first, reporting progress.
    Export {
        filter: EventFilter,
        path: String,
    },
}

/// Runs effects against one service.
pub struct Runner {
    service: Arc<dyn EventService>,
    tx: mpsc::Sender<Action>,
    runtime: Handle,
    /// Cancelled when the console closes: every task ends.
    stop: CancellationToken,
    /// The running feed's token; cancelled when a new feed replaces it.
    feed: Option<CancellationToken>,
}

impl Runner {
    pub fn new(
        service: Arc<dyn EventService>,
        tx: mpsc::Sender<Action>,
        runtime: Handle,
        stop: CancellationToken,
    ) -> Self {
        Self { service, tx, runtime, stop, feed: None }
    }

    pub fn run(&mut self, effect: Effect) {
        if let Effect::StartFeed { generation, filter } = effect {
            if let Some(previous) = self.feed.take() {
                previous.cancel();
            }
            let token = self.stop.child_token();
            self.feed = Some(token.clone());
            self.runtime.spawn(feed_task(self.service.clone(), filter, generation, self.tx.clone(), token));
            return;
        }
        if let Effect::Export { filter, path } = effect {
            let (service, tx, stop) = (self.service.clone(), self.tx.clone(), self.stop.clone());
            self.runtime.spawn(async move {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = export(service, filter, path, tx) => {}
                }
            });
            return;
        }
        let (service, tx, stop) = (self.service.clone(), self.tx.clone(), self.stop.clone());
        self.runtime.spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                action = call(service, effect) => {
                    // The console may have closed meanwhile; then nobody needs the answer.
                    let _ = tx.send(action).await;
                }
            }
        });
    }
}

/// Makes the call an effect names and wraps its answer. For `StartFeed` that is the first batch only
/// (the latest matching events); [`Runner`] follows the feed itself on a task of its own.
pub async fn call(service: Arc<dyn EventService>, effect: Effect) -> Action {
    let response = match effect {
        Effect::StartFeed { generation, filter } => return backfill(service.as_ref(), &filter, generation).await.0,
        Effect::Statistics => Response::Statistics(service.statistics().await),
        Effect::Health => Response::Health(service.health().await),
        Effect::Cluster => Response::Cluster(service.cluster().await),
        Effect::Query { request, query } => Response::History { request, result: service.query(query).await },
        Effect::EventDetail(event_id) => {
            let (event, results, attempts) = tokio::join!(
                service.event(event_id),
                service.processing_results(event_id),
                service.delivery_attempts(event_id)
            );
            Response::EventDetail(Box::new(EventDetail { event_id, event, results, attempts }))
        }
        Effect::DeadLetters { request, query } => {
            Response::DeadLetters { request, result: service.dead_letters(query).await }
        }
        Effect::DeadLetter(id) => Response::DeadLetter(service.dead_letter(id).await),
        Effect::DeadLetterGroups { request, query } => {
            Response::DeadLetterGroups { request, result: service.dead_letter_groups(query).await }
        }
        Effect::RetryDeadLetters(selector) => Response::Retried(service.retry_dead_letters(selector).await),
        Effect::DiscardDeadLetters(selector) => Response::DiscardedMany(service.discard_dead_letters(selector).await),
        Effect::DiscardDeadLetter(id) => Response::Discarded { id, result: service.discard_dead_letter(id).await },
        Effect::Processors => Response::Processors(service.processors().await),
        Effect::ToggleProcessor { id, enabled } => {
            Response::ProcessorToggled(service.toggle_processor(id, enabled).await)
        }
        Effect::Subscriptions => {
            let list = service.subscriptions().await;
            let ids: Vec<SubscriptionId> = list.iter().flatten().map(|s| s.subscription_id).collect();
            let dlq_counts = dead_letter_counts(service.as_ref(), ids).await;
            Response::Subscriptions { list, dlq_counts }
        }
        Effect::UpdateSubscription { id, enabled } => {
            let patch = SubscriptionPatch { enabled: Some(enabled), ..SubscriptionPatch::default() };
            Response::SubscriptionUpdated(service.update_subscription(id, patch).await)
        }
        Effect::DeleteSubscription(id) => {
            Response::SubscriptionDeleted { id, result: service.delete_subscription(id).await }
        }
        Effect::SubscriptionDetail(subscription) => {
            Response::SubscriptionDetail(Box::new(subscription_detail(service.as_ref(), subscription).await))
        }
        Effect::CountArchivable(before) => Response::ArchiveCount(count_archivable(service.as_ref(), before).await),
        Effect::Archive(before) => Response::Archived(service.archive(before, false).await),
        Effect::PrepareReplay(plan) => Response::ReplayDryRun(prepare_replay(service.as_ref(), plan).await),
        Effect::StartReplay(request) => Response::ReplayStarted(service.replay(request).await),
        Effect::ReplayProgress(id) => Response::ReplayProgress(service.replay_progress(id).await),
        Effect::Streams { request, prefix, limit } => {
            Response::Streams { request, result: service.streams(&prefix, None, limit).await.map(|l| l.streams) }
        }
        Effect::StreamEvents { request, stream_id, from_version, limit } => {
            Response::StreamEvents { request, result: service.stream(&stream_id, from_version, limit).await }
        }
        Effect::StreamState { request, entity_type, entity_id, version } => {
            let state = service.projection(&entity_type, &entity_id, ProjectionAt::Version(version));
            let before = async {
                if version > 1 {
                    Some(service.projection(&entity_type, &entity_id, ProjectionAt::Version(version - 1)).await)
                } else {
                    None
                }
            };
            let (state, before) = tokio::join!(state, before);
            Response::StreamState { request, state, before }
        }
        Effect::StreamAt { request, entity_type, entity_id, at } => Response::StreamAt {
            request,
            at,
            result: service.projection(&entity_type, &entity_id, ProjectionAt::Time(at)).await,
        },
        Effect::Export { filter, path } => {
            // Run whole (tests): progress goes nowhere, the last report is the answer.
            let (tx, mut rx) = mpsc::channel(1024);
            export(service, filter, path, tx).await;
            let mut last = None;
            while let Ok(action) = rx.try_recv() {
                last = Some(action);
            }
            return last.unwrap_or(Action::Response(Box::new(Response::Export {
                path: String::new(),
                written: 0,
                total: 0,
                done: true,
                error: Some("the export reported nothing".to_owned()),
            })));
        }
    };
    Action::Response(Box::new(response))
}

/// Pages through the events matching `filter` oldest first and writes each as one JSON line to `path`,
/// reporting progress after every page; the last report has `done` (and the error, if one stopped it).
async fn export(service: Arc<dyn EventService>, filter: EventFilter, path: String, tx: mpsc::Sender<Action>) {
    use tokio::io::AsyncWriteExt;
    let report = |written, total, done, error| {
        Action::Response(Box::new(Response::Export { path: path.clone(), written, total, done, error }))
    };
    let (mut written, mut total) = (0u64, 0u64);
    let outcome: Result<(), String> = async {
        let file = tokio::fs::File::create(&path).await.map_err(|e| format!("cannot create the file: {e}"))?;
        let mut out = tokio::io::BufWriter::new(file);
        loop {
            let query =
                EventQuery { filter: filter.clone(), limit: EventQuery::MAX_LIMIT, offset: written, order: Order::Asc };
            let page = service.query(query).await.map_err(|e| e.to_string())?;
            total = page.total;
            let got = page.events.len();
            for event in &page.events {
                let mut line = serde_json::to_vec(event).map_err(|e| e.to_string())?;
                line.push(b'\n');
                out.write_all(&line).await.map_err(|e| format!("cannot write: {e}"))?;
            }
            written += got as u64;
            if got == 0 || written >= total {
                break;
            }
            // Progress is best effort: a full channel skips a report, never the export.
            let _ = tx.try_send(report(written, total, false, None));
        }
        out.flush().await.map_err(|e| format!("cannot write: {e}"))?;
        Ok(())
    }
    .await;
    let _ = tx.send(report(written, total.max(written), true, outcome.err())).await;
}

/// The latest events matching `filter`, oldest first, as a feed batch, and the seq to follow on from.
async fn backfill(service: &dyn EventService, filter: &EventFilter, generation: u64) -> (Action, Option<i64>) {
    let query = EventQuery { filter: filter.clone(), limit: BACKFILL, offset: 0, order: Order::Desc };
    match service.query(query).await {
        Ok(page) => {
            let mut events = page.events;
            events.sort_by_key(|e| e.seq);
            let since = events.last().map(|e| e.seq);
            let items = events.into_iter().map(|e| FeedItem::Stored(Arc::new(e))).collect();
            (Action::Feed(FeedBatch { generation, items, dropped: 0, backfill: true }), since)
        }
        Err(error) => (Action::Response(Box::new(Response::FeedLost { generation, error })), None),
    }
}

/// Dead letters per subscription: one grouped query (every listed subscription counted, 0 when it
/// has none), or, from a server without it, one count per subscription (one that cannot be read is
/// left out).
async fn dead_letter_counts(service: &dyn EventService, ids: Vec<SubscriptionId>) -> HashMap<SubscriptionId, u64> {
    let query = DlqGroupQuery { kind: Some(DeadLetterKind::Delivery), buckets: 1, until: Timestamp::now() };
    if let Ok(answer) = service.dead_letter_groups(query).await {
        let mut counts: HashMap<SubscriptionId, u64> = ids.iter().map(|id| (*id, 0)).collect();
        for group in answer.groups {
            if let Some(count) = group.key.subscription_id.and_then(|id| counts.get_mut(&id)) {
                *count += group.count;
            }
        }
        return counts;
    }
    futures::stream::iter(ids)
        .map(|id| async move {
            let query = DlqQuery { subscription_id: Some(id), limit: 1, ..DlqQuery::default() };
            (id, service.dead_letters(query).await)
        })
        .buffer_unordered(FAN_OUT)
        .filter_map(|(id, page)| async move { page.ok().map(|p| (id, p.total)) })
        .collect()
        .await
}

/// The subscription's dead-letter count and the attempts made for it on the most recent stored events
/// it matches, newest first.
async fn subscription_detail(service: &dyn EventService, subscription: Arc<Subscription>) -> SubscriptionDetail {
    let id = subscription.subscription_id;
    let dead_letters = service
        .dead_letters(DlqQuery { subscription_id: Some(id), limit: 1, ..DlqQuery::default() })
        .await
        .map(|page| page.total);
    // One pattern can narrow the query; several are matched here.
    let event_type = match subscription.event_types.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    };
    let query = EventQuery {
        filter: EventFilter { event_type, ..EventFilter::default() },
        limit: RECENT_EVENTS,
        offset: 0,
        order: Order::Desc,
    };
    let attempts = match service.query(query).await {
        Ok(page) => {
            let matching: Vec<EventId> = page
                .events
                .iter()
                .filter(|e| e.seq > subscription.start_seq && subscription.matches(e))
                .take(RECENT_MATCHES)
                .map(|e| e.event_id)
                .collect();
            let lists: Vec<_> = futures::stream::iter(matching)
                .map(|event_id| service.delivery_attempts(event_id))
                .buffered(FAN_OUT)
                .collect()
                .await;
            let mut attempts: Vec<_> = lists
                .into_iter()
                .flat_map(|list| list.unwrap_or_default())
                .filter(|attempt| attempt.subscription_id == id)
                .collect();
            attempts.sort_by_key(|attempt| std::cmp::Reverse(attempt.attempted_at));
            Ok(attempts)
        }
        Err(error) => Err(error),
    };
    SubscriptionDetail { subscription, attempts, dead_letters }
}

/// Turns the plan into a request (collecting ids when the filter needs it) and runs its dry run.
async fn prepare_replay(
    service: &dyn EventService,
    plan: ReplayPlan,
) -> Result<(ReplayRequest, ReplayStarted), String> {
    let request = match plan {
        ReplayPlan::Direct(request) => request,
        ReplayPlan::ByIds(filter) => {
            let mut ids = Vec::new();
            loop {
                let query = EventQuery {
                    filter: filter.clone(),
                    limit: EventQuery::MAX_LIMIT,
                    offset: ids.len() as u64,
                    order: Order::Asc,
                };
                let page = service.query(query).await.map_err(|e| e.to_string())?;
                if page.total > MAX_IDS {
                    return Err(format!(
                        "{} events match, and a filter on category, status, user or text replays at most {MAX_IDS} \
                         (by id): narrow it, or select by type, source and time only",
                        page.total
                    ));
                }
                let got = page.events.len();
                ids.extend(page.events.iter().map(|e| e.event_id));
                if got < EventQuery::MAX_LIMIT as usize || ids.len() as u64 >= page.total {
                    break;
                }
            }
            if ids.is_empty() {
                // Nothing matches: the dry run's answer is known without asking.
                let request = ReplayRequest {
                    selection: ReplaySelection::Ids(ids),
                    event_type: None,
                    event_source: None,
                    target: None,
                    dry_run: true,
                    confirm: false,
                };
                let started = ReplayStarted {
                    replay_id: None,
                    status: ReplayStatus::DryRun,
                    events_count: 0,
                    events: Vec::new(),
                };
                return Ok((request, started));
            }
            ReplayRequest {
                selection: ReplaySelection::Ids(ids),
                event_type: None,
                event_source: None,
                target: None,
                dry_run: true,
                confirm: false,
            }
        }
    };
    let started = service.replay(request.clone()).await.map_err(|e| e.to_string())?;
    Ok((request, started))
}

/// How a feed stopped.
enum Ended {
    Stopped,
    Closed,
    Failed(Error),
}

/// Loads the latest matching events, then follows the feed, sending batches; resumes after the last
/// seen seq when the feed ends, until `stop`.
///
/// The first feed is opened before the latest events are read and starts at "now", so nothing
/// committed in between is missed (an event in both is dropped by the Live pane, which keeps seqs
/// increasing), and no catch-up from an old seq is asked of the store.
async fn feed_task(
    service: Arc<dyn EventService>,
    filter: EventFilter,
    generation: u64,
    tx: mpsc::Sender<Action>,
    stop: CancellationToken,
) {
    let mut feed = service.feed(filter.clone(), None);
    let (first, mut since) = tokio::select! {
        _ = stop.cancelled() => return,
        first = backfill(service.as_ref(), &filter, generation) => first,
    };
    if tx.send(first).await.is_err() {
        return;
    }
    let mut delay = FEED_RETRY;
    loop {
        if tx.send(Action::Response(Box::new(Response::FeedRunning { generation }))).await.is_err() {
            return;
        }
        let error = match pump(&mut feed, generation, &tx, &stop, &mut since, &mut delay).await {
            Ended::Stopped => return,
            Ended::Closed => Error::Unavailable("the live feed ended".to_owned()),
            Ended::Failed(error) => error,
        };
        tracing::warn!(%error, ?since, "console: live feed lost; resuming");
        if tx.send(Action::Response(Box::new(Response::FeedLost { generation, error }))).await.is_err() {
            return;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(FEED_RETRY_MAX);
        feed = service.feed(filter.clone(), since);
    }
}

/// Reads the feed into batches: the first item, then whatever follows within [`BATCH_WINDOW`].
async fn pump(
    feed: &mut Feed,
    generation: u64,
    tx: &mpsc::Sender<Action>,
    stop: &CancellationToken,
    since: &mut Option<i64>,
    delay: &mut Duration,
) -> Ended {
    loop {
        let first = tokio::select! {
            biased;
            _ = stop.cancelled() => return Ended::Stopped,
            item = feed.next() => item,
        };
        let mut batch = VecDeque::new();
        let mut dropped = 0;
        let mut ended = None;
        match first {
            None => return Ended::Closed,
            Some(Err(error)) => return Ended::Failed(error),
            Some(Ok(item)) => batch.push_back(item),
        }
        *delay = FEED_RETRY;
        let deadline = Instant::now() + BATCH_WINDOW;
        while ended.is_none() {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return Ended::Stopped,
                _ = tokio::time::sleep_until(deadline) => break,
                item = feed.next() => match item {
                    None => ended = Some(Ended::Closed),
                    Some(Err(error)) => ended = Some(Ended::Failed(error)),
                    Some(Ok(item)) => {
                        batch.push_back(item);
                        if batch.len() > MAX_BATCH {
                            batch.pop_front();
                            dropped += 1;
                        }
                    }
                },
            }
        }
        if let Some(seq) = batch.iter().rev().find_map(|item| match item {
            FeedItem::Stored(event) => Some(event.seq),
            _ => None,
        }) {
            *since = Some(seq);
        }
        let batch = FeedBatch { generation, items: batch.into(), dropped, backfill: false };
        if tx.send(Action::Feed(batch)).await.is_err() {
            return Ended::Stopped;
        }
        if let Some(ended) = ended {
            return ended;
        }
    }
}

/// The processed and failed events with a `timestamp` before `before`: what an archive run takes.
async fn count_archivable(service: &dyn EventService, before: Timestamp) -> Result<(Timestamp, u64), Error> {
    let mut total = 0;
    for status in [crate::domain::EventStatus::Processed, crate::domain::EventStatus::Failed] {
        let filter = EventFilter { status: Some(status), end_time: Some(before), ..EventFilter::default() };
        let query = EventQuery { filter, limit: 1, offset: 0, order: Order::Desc };
        total += service.query(query).await?.total;
    }
    Ok((before, total))
}
