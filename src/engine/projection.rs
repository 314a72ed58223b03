//! Projections: an entity's state read from its cached fold or a snapshot plus the stream's events after
//! it, and [`advance`], which the projection processor calls to keep cached folds and snapshots current.
//! A stream folded for the first time is announced to the NATS publisher (`projection.created`).
//!
//! A read is correct whatever the cache holds: the cache and snapshots only decide where folding starts.
//! `updated_at` is the `timestamp` of the last event folded (the event `last_event_id` names), so it
//! means the same for the latest state and for one read back in time.

use serde_json::Value;
use tokio::sync::Mutex;

use crate::domain::event::validate_stream_id;
use crate::domain::projection::{apply_change, stream_id};
use crate::domain::{EventId, FieldError, Projection, ProjectionAt, Timestamp};
use crate::engine::bus::Bus;
use crate::engine::workers::publisher::Notice;
use crate::service::Error;
use crate::storage::{self, CachedProjection, Fold, ProjectionSnapshot, Store, StreamChange, VersionRange};

/// Events read from the log per query while folding.
const PAGE: u32 = 1000;

/// Cached folds and snapshots gathered by [`advance`] before it saves them in one transaction.
const SAVE_EVERY: usize = 64;

/// The read side: answers projection reads, bringing a stream's cache up to date first when it is
/// far behind (the processor disabled or catching up), so later reads of that entity stay fast.
pub(crate) struct Projections {
    snapshot_every: i64,
    /// Where archived events are, for the answer to a read back before the oldest kept version.
    archive_dir: std::path::PathBuf,
    /// Where a projection this read side creates is announced.
    bus: Bus,
    /// One catch-up at a time: readers of the same lagging entity wait for it instead of each folding
    /// the whole stream.
    catch_up: Mutex<()>,
}

impl Projections {
    #[cfg(test)]
    pub(crate) fn new(snapshot_every: u32) -> Self {
        let (bus, _) = Bus::new(16, false, None);
        Self::with_archive(snapshot_every, std::path::PathBuf::from("data/archive"), bus)
    }

    pub(crate) fn with_archive(snapshot_every: u32, archive_dir: std::path::PathBuf, bus: Bus) -> Self {
        Self { snapshot_every: i64::from(snapshot_every.max(1)), archive_dir, bus, catch_up: Mutex::new(()) }
    }

    /// Refuses a read that would fold from `base` over versions deleted after archiving (the store
    /// keeps a snapshot at or after them, but not one this read can start from): "archived", with
    /// where the archive is, never a state folded with events missing.
    async fn check_kept(&self, store: &dyn Store, stream_id: &str, base: i64) -> Result<(), Error> {
        let first_kept = store.first_kept_version(stream_id).await?;
        if first_kept <= base + 1 {
            return Ok(());
        }
        let glob = self.archive_dir.join("events/**/*.jsonl");
        Err(Error::Archived(format!(
            "versions {}..={} of `{stream_id}` were archived and deleted from the store, and this read goes back \
             before the oldest state kept (version {}): the events are in the archive {} (e.g. DuckDB: SELECT * FROM \
             read_json_auto('{}') WHERE stream_id = '{stream_id}' ORDER BY stream_version)",
            base + 1,
            first_kept - 1,
            first_kept - 1,
            glob.display(),
            glob.display()
        )))
    }

    /// An entity's state at `at`; `NotFound` when no event of its stream is folded by then.
    pub(crate) async fn read(
        &self,
        store: &dyn Store,
        entity_type: &str,
        entity_id: &str,
        at: ProjectionAt,
    ) -> Result<Projection, Error> {
        check_entity(entity_type, entity_id)?;
        let stream_id = stream_id(entity_type, entity_id);
        let not_found = || Error::NotFound { what: "entity", id: stream_id.clone() };
        let current = store.stream_version(&stream_id).await?;
        if current == 0 {
            return Err(not_found());
        }
        let cached = self.cached(store, &stream_id, current).await?;

        let folding = match at {
            ProjectionAt::Latest => {
                let mut folding = Folding::new(cached.map(|c| c.fold));
                let rest = VersionRange { after: folding.version, until: None };
                fold_range(store, &stream_id, &mut folding, rest, None).await?;
                folding
            }
            ProjectionAt::Version(version) => {
                let base = match cached {
                    Some(cached) if cached.fold.version <= version => Some(cached.fold),
                    _ => store.snapshot_at_version(&stream_id, version).await?.map(|s| s.fold),
                };
                let mut folding = Folding::new(base);
                if version > folding.version {
                    self.check_kept(store, &stream_id, folding.version).await?;
                    let rest = VersionRange { after: folding.version, until: Some(version) };
                    fold_range(store, &stream_id, &mut folding, rest, None).await?;
                }
                folding
            }
            ProjectionAt::Time(time) => {
                // A base whose every event is at or before `time`; later events are then read only
                // where one at or before `time` can be, and folded in version order.
                let base = match cached {
                    Some(cached) if cached.fold.max_timestamp <= time => Some(cached.fold),
                    _ => store.snapshot_at_time(&stream_id, time).await?.map(|s| s.fold),
                };
                let mut folding = Folding::new(base);
                let ranges = store.ranges_at_time(&stream_id, folding.version, time).await?;
                if !ranges.is_empty() {
                    self.check_kept(store, &stream_id, folding.version).await?;
                }
                for range in ranges {
                    fold_range(store, &stream_id, &mut folding, range, Some(time)).await?;
                }
                folding
            }
        };
        let fold = folding.finish().ok_or_else(not_found)?;
        Ok(Projection {
            entity_type: entity_type.to_owned(),
            entity_id: entity_id.to_owned(),
            state: fold.state,
            version: fold.version,
            last_event_id: fold.last_event_id,
            updated_at: fold.updated_at,
        })
    }

    /// The stream's cached fold, first brought up to date when it is `snapshot_every` or more versions
    /// behind `current`. Failing to save is not failing the read: it folds from the log instead.
    async fn cached(
        &self,
        store: &dyn Store,
        stream_id: &str,
        current: i64,
    ) -> Result<Option<CachedProjection>, Error> {
        let cached = store.cached_projection(stream_id).await?;
        if current - cached.as_ref().map_or(0, |c| c.fold.version) < self.snapshot_every {
            return Ok(cached);
        }
        let _one_at_a_time = self.catch_up.lock().await;
        match advance(store, &[stream_id.to_owned()], self.snapshot_every).await {
            Ok(advanced) => {
                advanced.announce(&self.bus);
                Ok(store.cached_projection(stream_id).await?)
            }
            Err(error) => {
                tracing::warn!(%error, stream_id, "could not bring the projection cache up to date; folding from the log");
                Ok(cached)
            }
        }
    }
}

/// What one [`advance`] did.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Advanced {
    /// Events folded.
    pub folded: u64,
    /// Streams that had no cached fold before, with the version they were folded to.
    pub created: Vec<(String, i64)>,
}

impl Advanced {
    /// Hands the projections created to the NATS publisher (nothing when publications are off). Two
    /// instances folding the same new stream at once both announce it; the message id (the stream id)
    /// makes JetStream keep one.
    pub(crate) fn announce(self, bus: &Bus) {
        for (stream_id, version) in self.created {
            bus.notify_publisher(Notice::ProjectionCreated { stream_id, version });
        }
    }
}

/// Brings the cached fold of each of these streams up to date, saving a snapshot at every version that
/// is a multiple of `snapshot_every`.
///
/// Idempotent and safe to run concurrently with itself: a stream whose cache is current costs nothing
/// past one query for the whole list, saved folds only move forward, and snapshots are kept once
/// written. Progress is saved in transactions of a few dozen snapshots, so a long stream is never held
/// in memory whole and an interrupted run resumes where it stopped.
pub(crate) async fn advance(
    store: &dyn Store,
    stream_ids: &[String],
    snapshot_every: i64,
) -> Result<Advanced, storage::Error> {
    let every = snapshot_every.max(1);
    let mut advanced = Advanced::default();
    let mut cached: Vec<CachedProjection> = Vec::new();
    let mut snapshots: Vec<ProjectionSnapshot> = Vec::new();
    for stream_id in store.stale_projections(stream_ids).await? {
        let (base, mut snapshot_version, mut tail_min) = match store.cached_projection(&stream_id).await? {
            Some(c) => (Some(c.fold), c.snapshot_version, c.tail_min_timestamp),
            None => (None, 0, None),
        };
        let new = base.is_none();
        let mut folding = Folding::new(base);
        loop {
            let rest = VersionRange { after: folding.version, until: None };
            let changes = store.stream_changes(&stream_id, rest, None, PAGE).await?;
            for change in &changes {
                folding.apply(change);
                advanced.folded += 1;
                let min = tail_min.map_or(change.timestamp, |t: Timestamp| t.min(change.timestamp));
                tail_min = Some(min);
                if change.version % every == 0
                    && let Some(fold) = folding.fold()
                {
                    snapshots.push(ProjectionSnapshot {
                        stream_id: stream_id.clone(),
                        fold,
                        from_version: snapshot_version,
                        min_timestamp: min,
                    });
                    snapshot_version = change.version;
                    tail_min = None;
                }
            }
            let done = changes.len() < PAGE as usize;
            if done || snapshots.len() >= SAVE_EVERY {
                // The cached fold goes with the snapshots it names, in the same transaction.
                if let Some(fold) = folding.fold() {
                    cached.push(CachedProjection {
                        stream_id: stream_id.clone(),
                        fold,
                        snapshot_version,
                        tail_min_timestamp: tail_min,
                    });
                }
                if !done || cached.len() + snapshots.len() >= SAVE_EVERY {
                    store.save_projections(std::mem::take(&mut cached), std::mem::take(&mut snapshots)).await?;
                }
            }
            if done {
                if new && folding.version > 0 {
                    advanced.created.push((stream_id.clone(), folding.version));
                }
                break;
            }
        }
    }
    store.save_projections(cached, snapshots).await?;
    Ok(advanced)
}

/// The entity parts of a stream id: the type is what comes before the first `:`, so it cannot hold one.
fn check_entity(entity_type: &str, entity_id: &str) -> Result<(), Error> {
    if entity_type.is_empty() || entity_type.contains(':') {
        return Err(Error::Invalid(FieldError::new(
            "entity_type",
            format!(
                "`{entity_type}` is not an entity type: use the part of a stream id before its first `:`, e.g. \"user\" for \"user:123\""
            ),
        )));
    }
    if entity_id.is_empty() {
        return Err(Error::Invalid(FieldError::new(
            "entity_id",
            "must not be empty: use the part of a stream id after its first `:`, e.g. \"123\" for \"user:123\"",
        )));
    }
    validate_stream_id("entity", &stream_id(entity_type, entity_id)).map_err(Error::Invalid)
}

/// A fold in progress: a base (or nothing), then events in version order.
struct Folding {
    state: Value,
    /// The last version folded, 0 before any.
    version: i64,
    /// The last event folded and its timestamp.
    last: Option<(EventId, Timestamp)>,
    max_timestamp: Option<Timestamp>,
}

impl Folding {
    fn new(base: Option<Fold>) -> Self {
        match base {
            Some(fold) => Self {
                state: fold.state,
                version: fold.version,
                last: Some((fold.last_event_id, fold.updated_at)),
                max_timestamp: Some(fold.max_timestamp),
            },
            None => Self { state: Value::Null, version: 0, last: None, max_timestamp: None },
        }
    }

    fn apply(&mut self, change: &StreamChange) {
        apply_change(&mut self.state, &change.event_type, &change.data);
        self.version = change.version;
        self.last = Some((change.event_id, change.timestamp));
        self.max_timestamp = Some(self.max_timestamp.map_or(change.timestamp, |t| t.max(change.timestamp)));
    }

    /// The fold so far; `None` when nothing was folded.
    fn fold(&self) -> Option<Fold> {
        let ((last_event_id, updated_at), max_timestamp) = self.last.zip(self.max_timestamp)?;
        Some(Fold { state: self.state.clone(), version: self.version, last_event_id, updated_at, max_timestamp })
    }

    fn finish(self) -> Option<Fold> {
        let ((last_event_id, updated_at), max_timestamp) = self.last.zip(self.max_timestamp)?;
        Some(Fold { state: self.state, version: self.version, last_event_id, updated_at, max_timestamp })
    }
}

/// Folds a stream's events in `range` (those at or before `time`, when given), page by page.
async fn fold_range(
    store: &dyn Store,
    stream_id: &str,
    folding: &mut Folding,
    range: VersionRange,
    time: Option<Timestamp>,
) -> Result<(), storage::Error> {
    let mut after = range.after;
    loop {
        let changes = store.stream_changes(stream_id, VersionRange { after, until: range.until }, time, PAGE).await?;
        for change in &changes {
            folding.apply(change);
        }
        match changes.last() {
            Some(last) if changes.len() == PAGE as usize => after = last.version,
            _ => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Map, json};

    use super::*;
    use crate::domain::projection::apply;
    use crate::domain::{Event, NewEvent};
    use crate::storage::{Appended, EventStore, ProjectionStore, SqliteStore};

    const STREAM: &str = "user:1";
    /// 2026-01-01T00:00:00Z, the generated events' timestamps count from here.
    const EPOCH: i64 = 1_767_225_600_000_000;

    async fn store() -> (tempfile::TempDir, SqliteStore) {
        SqliteStore::temporary().await
    }

    /// One event of a generated stream: a merge patch (or a delete) at `second` after [`EPOCH`].
    #[derive(Debug, Clone)]
    struct Step {
        deleted: bool,
        data: Map<String, Value>,
        second: i64,
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_micros(EPOCH + second * 1_000_000)
    }

    async fn append(store: &SqliteStore, steps: &[Step]) -> Vec<Event> {
        let events = steps
            .iter()
            .map(|step| {
                let mut event = NewEvent::new(if step.deleted { "user.deleted" } else { "user.updated" });
                event.stream_id = Some(STREAM.into());
                event.data = step.data.clone();
                event.timestamp = at(step.second);
                event
            })
            .collect();
        let stored = store.append(events).await.unwrap();
        stored
            .into_iter()
            .map(|a| match a {
                Appended::Created(event) => event,
                other => panic!("not stored: {other:?}"),
            })
            .collect()
    }

    fn patch(value: Value) -> Step {
        let Value::Object(data) = value else { panic!("a patch is an object") };
        Step { deleted: false, data, second: 0 }
    }

    /// The reference: every event `keep` takes, folded from nothing in version order.
    fn expected(events: &[Event], keep: impl Fn(&Event) -> bool) -> Option<Projection> {
        let mut state = Value::Null;
        let mut last = None;
        for event in events.iter().filter(|e| keep(e)) {
            apply(&mut state, event);
            last = Some(event);
        }
        last.map(|event| Projection {
            entity_type: "user".into(),
            entity_id: "1".into(),
            state,
            version: event.stream_version.unwrap(),
            last_event_id: event.event_id,
            updated_at: event.timestamp,
        })
    }

    async fn read(projections: &Projections, store: &SqliteStore, at: ProjectionAt) -> Option<Projection> {
        match projections.read(store, "user", "1", at).await {
            Ok(projection) => Some(projection),
            Err(Error::NotFound { what: "entity", id }) if id == STREAM => None,
            Err(other) => panic!("read {at:?} failed: {other}"),
        }
    }

    #[tokio::test]
    async fn advance_snapshots_every_n_versions_and_does_nothing_the_second_time() {
        let (_dir, store) = store().await;
        let steps: Vec<Step> =
            (0..10).map(|i| Step { second: 10 - i, ..patch(json!({ "n": i, format!("k{i}"): true })) }).collect();
        let events = append(&store, &steps).await;
        let ids = [STREAM.to_owned()];
        assert_eq!(store.stale_projections(&ids).await.unwrap(), ids);

        let first = advance(&store, &ids, 3).await.unwrap();
        assert_eq!(first, Advanced { folded: 10, created: vec![(STREAM.to_owned(), 10)] }, "a new stream is created");
        for (version, from) in [(3, 0), (6, 3), (9, 6)] {
            let snapshot = store.snapshot_at_version(STREAM, version).await.unwrap().unwrap();
            let fold = expected(&events, |e| e.stream_version <= Some(version)).unwrap();
            assert_eq!((snapshot.fold.version, snapshot.from_version), (version, from));
            assert_eq!(snapshot.fold.state, fold.state);
            assert_eq!(snapshot.fold.last_event_id, fold.last_event_id);
            // Timestamps fall as versions rise: the span's lowest is its last event's, the running
            // highest is the first event's.
            assert_eq!(snapshot.min_timestamp, at(10 - (version - 1)));
            assert_eq!(snapshot.fold.max_timestamp, at(10));
        }
        assert_eq!(store.snapshot_at_version(STREAM, 2).await.unwrap(), None);
        let cached = store.cached_projection(STREAM).await.unwrap().unwrap();
        assert_eq!((cached.fold.version, cached.snapshot_version), (10, 9));
        assert_eq!(cached.tail_min_timestamp, Some(at(1)));
        assert_eq!(cached.fold.state, expected(&events, |_| true).unwrap().state);

        assert!(store.stale_projections(&ids).await.unwrap().is_empty());
        assert_eq!(advance(&store, &ids, 3).await.unwrap().folded, 0, "nothing new: nothing folded");
        assert_eq!(store.cached_projection(STREAM).await.unwrap().unwrap(), cached);

        append(&store, &[patch(json!({"n": 10})), patch(json!({"n": 11}))]).await;
        assert_eq!(advance(&store, &ids, 3).await.unwrap(), Advanced { folded: 2, created: vec![] });
        let snapshot = store.snapshot_at_version(STREAM, 12).await.unwrap().unwrap();
        assert_eq!((snapshot.fold.version, snapshot.from_version), (12, 9));
        assert_eq!(snapshot.min_timestamp, at(0), "the span 10..=12 includes event 10, before the restart");
    }

    #[tokio::test]
    async fn advance_folds_long_streams_across_pages_and_saves() {
        let (_dir, store) = store().await;
        let steps: Vec<Step> = (0..2_500).map(|i| Step { second: i, ..patch(json!({ "n": i })) }).collect();
        let events = append(&store, &steps).await;
        let ids = [STREAM.to_owned(), "user:nobody".to_owned()];
        assert_eq!(advance(&store, &ids, 7).await.unwrap().folded, 2_500);
        let cached = store.cached_projection(STREAM).await.unwrap().unwrap();
        assert_eq!((cached.fold.version, cached.snapshot_version), (2_500, 2_499));
        assert_eq!(store.cached_projection("user:nobody").await.unwrap(), None);
        let newest = store.snapshot_at_version(STREAM, i64::MAX).await.unwrap().unwrap();
        assert_eq!(newest.fold.state, json!({"n": 2_498}));
        let middle = store.snapshot_at_version(STREAM, 1_000).await.unwrap().unwrap();
        assert_eq!((middle.fold.version, middle.from_version), (994, 987));
        assert_eq!(middle.fold.last_event_id, events[993].event_id);
    }

    #[tokio::test]
    async fn time_reads_only_read_spans_that_hold_early_events() {
        let (_dir, store) = store().await;
        // Versions 1..=50 at seconds 1..=50, except version 45, which is late: it says second 5.
        let steps: Vec<Step> = (1..=50)
            .map(|v| Step { second: if v == 45 { 5 } else { v }, ..patch(json!({ format!("v{v}"): v })) })
            .collect();
        let events = append(&store, &steps).await;
        advance(&store, &[STREAM.to_owned()], 10).await.unwrap();
        let range = |after, until| VersionRange { after, until };

        let base = store.snapshot_at_time(STREAM, at(25)).await.unwrap().unwrap();
        assert_eq!(base.fold.version, 20);
        // 20..30 holds seconds 21..=25; 40..50 holds the late event; 30..40 is skipped.
        assert_eq!(store.ranges_at_time(STREAM, 20, at(25)).await.unwrap(), [range(20, Some(30)), range(40, None)]);
        let projections = Projections::new(10);
        let read = read(&projections, &store, ProjectionAt::Time(at(25))).await;
        assert_eq!(read, expected(&events, |e| e.timestamp <= at(25)));
        assert_eq!(read.unwrap().version, 45, "the late event is the last one folded");
        // Every snapshot holds an event after second 4, so none is a base for it.
        assert_eq!(store.snapshot_at_time(STREAM, at(4)).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_read_of_a_far_behind_cache_brings_it_up_to_date() {
        let (_dir, store) = store().await;
        let steps: Vec<Step> = (0..12).map(|i| patch(json!({ "n": i }))).collect();
        let events = append(&store, &steps).await;
        let projections = Projections::new(5);
        let latest = read(&projections, &store, ProjectionAt::Latest).await;
        assert_eq!(latest, expected(&events, |_| true));
        let cached = store.cached_projection(STREAM).await.unwrap().unwrap();
        assert_eq!((cached.fold.version, cached.snapshot_version), (12, 10));
        assert!(store.snapshot_at_version(STREAM, 5).await.unwrap().is_some());

        // Fewer than `snapshot_every` behind: the read folds the tail and leaves the cache alone.
        let more = append(&store, &[patch(json!({"n": 12})), patch(json!({"n": 13}))]).await;
        let all: Vec<Event> = events.into_iter().chain(more).collect();
        assert_eq!(read(&projections, &store, ProjectionAt::Latest).await, expected(&all, |_| true));
        assert_eq!(store.cached_projection(STREAM).await.unwrap().unwrap().fold.version, 12);
    }

    #[tokio::test]
    async fn entity_names_that_cannot_be_a_stream_are_invalid() {
        let (_dir, store) = store().await;
        let projections = Projections::new(100);
        for (entity_type, entity_id) in [("", "1"), ("user:x", "1"), ("user", "")] {
            let error = projections.read(&store, entity_type, entity_id, ProjectionAt::Latest).await.unwrap_err();
            assert!(matches!(error, Error::Invalid(_)), "{entity_type:?} {entity_id:?}: {error}");
        }
        let error = projections.read(&store, "user", "x", ProjectionAt::Latest).await.unwrap_err();
        assert!(matches!(error, Error::NotFound { what: "entity", .. }), "{error}");
    }

    /// A JSON value for a merge patch: small, with nulls (which remove keys) and nested objects.
    fn patch_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (-3i64..3).prop_map(Value::from),
            "[a-c]{0,2}".prop_map(Value::from),
        ];
        leaf.prop_recursive(2, 12, 3, |inner| {
            prop_oneof![
                prop::collection::btree_map("[a-d]", inner.clone(), 0..3)
                    .prop_map(|fields| Value::Object(fields.into_iter().collect())),
                prop::collection::vec(inner, 0..2).prop_map(Value::Array),
            ]
        })
    }

    fn step() -> impl Strategy<Value = Step> {
        (prop::bool::weighted(0.1), prop::collection::btree_map("[a-e]", patch_value(), 0..4), 0i64..30)
            .prop_map(|(deleted, data, second)| Step { deleted, data: data.into_iter().collect(), second })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Whatever the cache holds (nothing, some snapshots, a lagging fold), every read equals the
        /// fold of the whole stream from nothing.
        #[test]
        fn reads_through_snapshots_equal_the_full_fold(
            steps in prop::collection::vec(step(), 1..40),
            snapshot_every in 1i64..6,
            cuts in prop::collection::vec(0usize..40, 0..4),
            read_threshold in prop_oneof![Just(None), (1u32..6).prop_map(Some)],
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let (_dir, store) = store().await;
                // Append in pieces, advancing after each but the last, so the cache lags by a piece.
                let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(steps.len())).collect();
                cuts.sort_unstable();
                cuts.push(steps.len());
                let mut events = Vec::new();
                let mut from = 0;
                for (i, &to) in cuts.iter().enumerate() {
                    if to > from {
                        events.extend(append(&store, &steps[from..to]).await);
                        from = to;
                    }
                    if i + 1 < cuts.len() {
                        advance(&store, &[STREAM.to_owned()], snapshot_every).await.unwrap();
                    }
                }
                // Reads that never catch up themselves, or ones that do (which changes the cache).
                let projections = Projections::new(read_threshold.unwrap_or(u32::MAX));
                let n = events.len() as i64;

                for version in 0..=n + 1 {
                    let read = read(&projections, &store, ProjectionAt::Version(version)).await;
                    prop_assert_eq!(read, expected(&events, |e| e.stream_version <= Some(version)), "version {}", version);
                }
                for second in -1..=31 {
                    let time = at(second);
                    let read = read(&projections, &store, ProjectionAt::Time(time)).await;
                    prop_assert_eq!(read, expected(&events, |e| e.timestamp <= time), "second {}", second);
                }
                let read = read(&projections, &store, ProjectionAt::Latest).await;
                prop_assert_eq!(read, expected(&events, |_| true));
                Ok(())
            })?;
        }
    }
}
