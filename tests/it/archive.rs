//! The archive over HTTP: hour partitions, files whose lines are the events, marking, listing, an
//! idempotent re-run, a run stopped between writing and marking, deleting (counters, stream heads,
//! projections), bad input, a full disk, one run at a time, and retention on a timer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{BACKEND, Backend, TestServer, assert_error};
use eventdeck::domain::{Event, EventStatus, Timestamp};
use eventdeck::engine::archive::{files, list};

/// Waits until no event is pending or processing.
async fn settled(server: &TestServer) -> Value {
    for _ in 0..200 {
        let (_, stats) = server.get("/api/v1/events/statistics").await;
        if stats["pending_events"] == 0 && stats["processing_events"] == 0 {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("events still pending after 10 s");
}

async fn processing_server() -> TestServer {
    TestServer::with_config(|config| {
        config.processing.enabled = true;
        config.processing.poll_interval_ms = 10;
        config.projections.snapshot_every = 2;
    })
    .await
}

/// Every archived line under `dir`, by file (relative path).
fn read_archive(dir: &Path) -> BTreeMap<String, Vec<Event>> {
    let mut files = BTreeMap::new();
    for partition in list::partitions(dir).expect("a readable archive") {
        for entry in std::fs::read_dir(dir.join(&partition.path)).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(name.ends_with(".jsonl") && !name.starts_with('.'), "only finished files are left: {name}");
            let text = std::fs::read_to_string(entry.path()).unwrap();
            let events: Vec<Event> =
                text.lines().map(|line| serde_json::from_str(line).expect("each line is an Event")).collect();
            files.insert(format!("{}/{name}", partition.path), events);
        }
    }
    files
}

/// Stores `n` events of `event_type` at minute `minute` of `hour` on 2026-01-10, spread over seconds.
async fn put_hour(server: &TestServer, event_type: &str, user: &str, hour: u32, n: usize) {
    let events: Vec<Value> = (0..n)
        .map(|i| {
            json!({"event_type": event_type, "user_id": user, "data": {"i": i},
                   "timestamp": format!("2026-01-10T{hour:02}:{:02}:{:02}Z", i / 60 % 60, i % 60)})
        })
        .collect();
    let (status, body) = server.post("/api/v1/events/batch", &json!(events)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["failed"], 0, "{body}");
}

fn status_count(stats: &Value, status: &str) -> i64 {
    stats["events_by_status"][status].as_i64().unwrap_or(0)
}

crate::on_every_backend! {
    #[tokio::test]
    async fn archive_writes_hour_partitions_whose_lines_are_the_events_then_marks_them() {
        let server = processing_server().await;
        put_hour(&server, "page.viewed", "ann", 7, 30).await;
        put_hour(&server, "order.paid", "bo", 8, 20).await;
        put_hour(&server, "page.viewed", "bo", 9, 10).await;
        // Recent: stays.
        server.create(json!({"event_type": "page.viewed", "user_id": "ann"})).await;
        let before = settled(&server).await;
        assert_eq!(before["total_events"], 61);

        let (status, report) = server.post("/api/v1/events/archive", &json!({"before": "2026-01-11T00:00:00Z"})).await;
        assert_eq!(status, StatusCode::OK, "{report}");
        assert_eq!(report["archived"], 60);
        let paths: BTreeSet<String> =
            report["files"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_owned()).collect();
        assert_eq!(paths.len(), 3, "one file per hour: {paths:?}");

        let dir = server.archive_dir();
        let archive = read_archive(&dir);
        assert_eq!(archive.keys().cloned().collect::<BTreeSet<_>>(), paths, "the answer names the files written");
        let instance = server.get("/health").await.1["instance_id"].as_str().unwrap().to_owned();
        let mut seqs = BTreeSet::new();
        for (path, events) in &archive {
            let hour = &path["events/2026/01/10/".len().."events/2026/01/10/07".len()];
            let first = events.iter().map(|e| e.seq).min().unwrap();
            assert_eq!(path, &format!("events/2026/01/10/{hour}/{instance}_{first}.jsonl"));
            for event in events {
                assert!(seqs.insert(event.seq), "seq {} archived twice", event.seq);
                assert_eq!(files::partition(event.timestamp), path[..path.rfind('/').unwrap()]);
                assert_eq!(event.status, EventStatus::Processed, "the line is the event as it was archived");
                // The line is the stored event, field for field (only its status moved on).
                let (_, stored) = server.get(&format!("/api/v1/events/{}", event.event_id)).await;
                assert_eq!(stored["status"], "archived");
                let mut line = serde_json::to_value(event).unwrap();
                line["status"] = json!("archived");
                assert_eq!(line, stored);
            }
        }
        assert_eq!(seqs.len(), 60);
        // Count by type per hour, as the README's DuckDB query does over the glob.
        let mut by_type_hour: BTreeMap<(String, String), usize> = BTreeMap::new();
        for events in archive.values() {
            for event in events {
                *by_type_hour.entry((event.event_type.clone(), files::partition(event.timestamp))).or_default() += 1;
            }
        }
        assert_eq!(by_type_hour[&("page.viewed".into(), "events/2026/01/10/07".into())], 30);
        assert_eq!(by_type_hour[&("order.paid".into(), "events/2026/01/10/08".into())], 20);
        assert_eq!(by_type_hour[&("page.viewed".into(), "events/2026/01/10/09".into())], 10);

        // The listing: three hours with their counts and time ranges.
        let partitions = list::partitions(&dir).unwrap();
        let summary: Vec<(String, u64, u64)> = partitions.iter().map(|p| (p.path.clone(), p.files, p.events)).collect();
        assert_eq!(summary, [
            ("events/2026/01/10/07".to_owned(), 1, 30),
            ("events/2026/01/10/08".to_owned(), 1, 20),
            ("events/2026/01/10/09".to_owned(), 1, 10),
        ]);
        assert_eq!(partitions[0].first, Some(Timestamp::parse("2026-01-10T07:00:00Z").unwrap()));
        assert_eq!(partitions[0].last, Some(Timestamp::parse("2026-01-10T07:00:29Z").unwrap()));

        let stats = settled(&server).await;
        assert_eq!(stats["total_events"], 61, "counters stay");
        assert_eq!(status_count(&stats, "archived"), 60);
        assert_eq!(status_count(&stats, "processed"), 1);
        assert_eq!(stats["archive"]["files"], 3);
        assert!(stats["archive"]["bytes"].as_u64().unwrap() > 60 * 100);
        assert_eq!(stats["archive"]["oldest_event"], "2026-01-10T07:00:00.000000Z");

        // Again: nothing left to archive, nothing written twice.
        let (status, again) = server.post("/api/v1/events/archive", &json!({"before": "2026-01-11T00:00:00Z"})).await;
        assert_eq!(status, StatusCode::OK, "{again}");
        assert_eq!(again, json!({"archived": 0, "files": [], "deleted": 0}));
        assert_eq!(read_archive(&dir), archive);
    }

    #[tokio::test]
    async fn a_run_stopped_between_writing_and_marking_is_finished_with_the_same_files() {
        let server = processing_server().await;
        put_hour(&server, "page.viewed", "ann", 7, 25).await;
        put_hour(&server, "page.viewed", "ann", 8, 5).await;
        settled(&server).await;
        let store = server.engine.store().clone();
        let dir = server.archive_dir();

        // A run that writes its files and dies before marking: the plan stays with the lease.
        let now = Timestamp::now();
        assert_eq!(store.claim_archive(now, now.plus(Duration::from_secs(60))).await.unwrap(), Some(vec![]));
        let before = Timestamp::parse("2026-01-11T00:00:00Z").unwrap();
        let lines = store.archivable(EventStatus::Processed, before, None, 20).await.unwrap();
        assert_eq!(lines.len(), 20, "a first batch of 20");
        let plan = files::plan(&lines, store.instance_id());
        assert!(store.plan_archive(&plan, now.plus(Duration::from_secs(60))).await.unwrap());
        for part in &plan {
            let text: Vec<&str> =
                lines.iter().filter(|l| part.seqs.contains(&l.seq)).map(|l| l.line.as_str()).collect();
            files::write(&dir, part, &text).unwrap();
        }
        assert_eq!(status_count(&settled(&server).await, "archived"), 0, "nothing marked yet");

        // The next run finishes that plan (the same files) and then the rest.
        let (status, report) = server.post("/api/v1/events/archive", &json!({"before": "2026-01-11T00:00:00Z"})).await;
        assert_eq!(status, StatusCode::OK, "{report}");
        assert_eq!(report["archived"], 30);
        let archive = read_archive(&dir);
        let mut seqs: Vec<i64> = archive.values().flatten().map(|e| e.seq).collect();
        seqs.sort_unstable();
        let unique: BTreeSet<i64> = seqs.iter().copied().collect();
        assert_eq!(seqs.len(), 30, "no event lost or written twice: {archive:?}");
        assert_eq!(unique.len(), 30);
        for part in &plan {
            assert!(archive.contains_key(&part.path), "the stopped run's file {} is kept", part.path);
        }
        assert_eq!(status_count(&settled(&server).await, "archived"), 30);
    }

    #[tokio::test]
    async fn deleting_keeps_counters_stream_heads_and_projections() {
        let server = processing_server().await;
        put_hour(&server, "page.viewed", "ann", 7, 10).await;
        for (version, second) in (1..=5).zip(1..) {
            let body = json!({"event_type": "order.updated", "stream_id": "order:1", "data": {"step": version},
                              "timestamp": format!("2026-01-10T08:00:{second:02}Z")});
            server.create(body).await;
        }
        let recent = server.create(json!({"event_type": "page.viewed"})).await;
        let stats = settled(&server).await;
        let latest = server.get("/api/v1/events/projections/order/1").await.1;
        assert_eq!(latest["version"], 5);

        let (status, report) = server
            .post("/api/v1/events/archive", &json!({"before": "2026-01-11T00:00:00Z", "delete": true}))
            .await;
        assert_eq!(status, StatusCode::OK, "{report}");
        assert_eq!(report["archived"], 15);
        // The 10 loose events, and the stream's versions up to its newest snapshot (4); version 5 is
        // the stream's head and stays.
        assert_eq!(report["deleted"], 14, "{report}");
        assert_eq!(read_archive(&server.archive_dir()).values().flatten().count(), 15, "everything is in the archive");

        let after = settled(&server).await;
        assert_eq!(after["total_events"], stats["total_events"], "statistics keep counting deleted events");
        assert_eq!(after["events_by_type"], stats["events_by_type"]);
        assert_eq!(after["archive"]["oldest_event"], "2026-01-10T08:00:05.000000Z");
        let (status, _) = server.get(&format!("/api/v1/events/{}", recent["event_id"].as_str().unwrap())).await;
        assert_eq!(status, StatusCode::OK, "recent events stay");
        let (_, page) = server.get("/api/v1/events?event_type=page.viewed&limit=100").await;
        assert_eq!(page["total"], 1, "{page}");

        // Projections: the latest state and any version from the snapshot on are as before; earlier
        // ones say where they went.
        assert_eq!(server.get("/api/v1/events/projections/order/1").await.1, latest);
        let (status, at4) = server.get("/api/v1/events/projections/order/1?at_version=4").await;
        assert_eq!(status, StatusCode::OK, "{at4}");
        assert_eq!(at4["state"], json!({"step": 4}));
        let (status, at2) = server.get("/api/v1/events/projections/order/1?at_version=2").await;
        assert_eq!((status, &at2["state"]), (StatusCode::OK, &json!({"step": 2})), "a snapshot kept: {at2}");
        let gone = server.get("/api/v1/events/projections/order/1?at_version=3").await;
        assert_error(&gone, StatusCode::GONE, "archived", "archive");
        assert!(gone.1["error"]["message"].as_str().unwrap().contains("events/**/*.jsonl"), "{gone:?}");
        let gone = server.get("/api/v1/events/projections/order/1?at_time=2026-01-10T08:00:03Z").await;
        assert_error(&gone, StatusCode::GONE, "archived", "archive");

        // The stream goes on from its version.
        let next = server
            .create(json!({"event_type": "order.updated", "stream_id": "order:1", "expected_version": 5, "data": {"step": 6}}))
            .await;
        assert_eq!(next["stream_version"], 6);
    }

    #[tokio::test]
    async fn bad_input_and_an_unwritable_folder_mark_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, "not a folder").unwrap();
        let blocked = file.join("archive").display().to_string();
        let server = TestServer::with_config(|config| {
            config.processing.enabled = true;
            config.processing.poll_interval_ms = 10;
            config.archive.dir = blocked.clone();
        })
        .await;
        put_hour(&server, "page.viewed", "ann", 7, 5).await;
        settled(&server).await;

        let future = Timestamp::now().plus(Duration::from_secs(3600)).to_string();
        let answer = server.post("/api/v1/events/archive", &json!({"before": future})).await;
        assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", "future");
        assert_eq!(answer.1["error"]["field"], "before");
        let answer = server.post("/api/v1/events/archive", &json!({"before": "yesterday"})).await;
        assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", "yesterday");
        let answer = server.post("/api/v1/events/archive", &json!({"before": "2026-01-11T00:00:00Z", "delet": true})).await;
        assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", "delete");

        let answer = server.post("/api/v1/events/archive", &json!({"before": "2026-01-11T00:00:00Z"})).await;
        assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", &blocked);
        assert_eq!(answer.1["error"]["field"], "archive.dir");
        assert_eq!(status_count(&settled(&server).await, "archived"), 0, "nothing marked");
    }

    #[tokio::test]
    async fn a_full_disk_leaves_the_store_untouched_and_no_partial_file() {
        let server = processing_server().await;
        put_hour(&server, "page.viewed", "ann", 7, 50).await;
        settled(&server).await;
        let instance = server.get("/health").await.1["instance_id"].as_str().unwrap().to_owned();
        let (_, page) = server.get("/api/v1/events?order=asc&limit=1").await;
        let first = page["events"][0]["seq"].as_i64().unwrap();
        // The file's temporary name is /dev/full: every write to it fails with ENOSPC.
        let folder = server.archive_dir().join("events/2026/01/10/07");
        std::fs::create_dir_all(&folder).unwrap();
        let temporary = folder.join(format!(".{instance}_{first}.jsonl.tmp"));
        std::os::unix::fs::symlink("/dev/full", &temporary).unwrap();

        let (status, body) = server.post("/api/v1/events/archive", &json!({"before": "2026-01-11T00:00:00Z"})).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("nothing was marked"), "{body}");
        assert_eq!(status_count(&settled(&server).await, "archived"), 0, "the store is untouched");
        assert!(std::fs::read_dir(&folder).unwrap().next().is_none(), "the partial file is removed");

        // With room again, the same run succeeds.
        let (status, report) = server.post("/api/v1/events/archive", &json!({"before": "2026-01-11T00:00:00Z"})).await;
        assert_eq!(status, StatusCode::OK, "{report}");
        assert_eq!(report["archived"], 50);
        assert_eq!(read_archive(&server.archive_dir()).values().flatten().count(), 50);
    }

    #[tokio::test]
    async fn retention_archives_and_deletes_on_its_timer() {
        let server = TestServer::with_config(|config| {
            config.processing.enabled = true;
            config.processing.poll_interval_ms = 10;
            config.retention.archive_after_days = 2;
            config.retention.delete_after_days = 5;
            config.retention.interval_secs = 1;
        })
        .await;
        let at = |days: u64| Timestamp::now().minus(Duration::from_secs(days * 86_400)).to_string();
        let events: Vec<Value> = [(10, "old"), (10, "old"), (3, "middle"), (3, "middle"), (0, "new")]
            .iter()
            .map(|(days, kind)| json!({"event_type": format!("{kind}.event"), "timestamp": at(*days)}))
            .collect();
        let (status, body) = server.post("/api/v1/events/batch", &json!(events)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["failed"], 0, "{body}");
        settled(&server).await;

        let mut stats = Value::Null;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            stats = server.get("/api/v1/events/statistics").await.1;
            let (_, old) = server.get("/api/v1/events?event_type=old.event").await;
            if status_count(&stats, "archived") == 4 && old["total"] == 0 {
                break;
            }
        }
        assert_eq!(status_count(&stats, "archived"), 4, "{stats}");
        assert_eq!(status_count(&stats, "processed"), 1, "{stats}");
        let (_, old) = server.get("/api/v1/events?event_type=old.event").await;
        assert_eq!(old["total"], 0, "events past delete_after_days are gone: {old}");
        let (_, middle) = server.get("/api/v1/events?event_type=middle.event").await;
        assert_eq!(middle["total"], 2, "archived but kept: {middle}");
        assert_eq!(middle["events"][0]["status"], "archived");
        assert_eq!(read_archive(&server.archive_dir()).values().flatten().count(), 4);
        assert_eq!(stats["total_events"], 5);
    }

    #[tokio::test]
    async fn one_archive_run_at_a_time_across_instances() {
        if BACKEND.get() != Backend::Postgres {
            // One process holds a SQLite store: there is no other instance.
            return;
        }
        let first = processing_server().await;
        let second = first.beside(|config| config.processing.enabled = false).await;
        put_hour(&first, "page.viewed", "ann", 7, 5).await;
        settled(&first).await;
        let now = Timestamp::now();
        let store = first.engine.store().clone();
        assert!(store.claim_archive(now, now.plus(Duration::from_secs(60))).await.unwrap().is_some());
        let answer = second.post("/api/v1/events/archive", &json!({"before": "2026-01-11T00:00:00Z"})).await;
        assert_error(&answer, StatusCode::CONFLICT, "conflict", "another instance");
        store.release_archive().await.unwrap();
        let (status, report) = second.post("/api/v1/events/archive", &json!({"before": "2026-01-11T00:00:00Z"})).await;
        assert_eq!(status, StatusCode::OK, "{report}");
        assert_eq!(report["archived"], 5);
    }
}
