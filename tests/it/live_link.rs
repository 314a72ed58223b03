//! The live feed between instances over NATS: two instances on one fresh PostgreSQL schema, with the
//! store poll slowed to a minute, so whatever reaches the other instance's live stream within seconds
//! came over NATS. SKIPPED unless both EVENTDECK_TEST_DATABASE_URL and EVENTDECK_TEST_NATS_URL are set.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tokio::time::Instant;

use crate::support::{BACKEND, Backend, Frame, SseReader, TestServer};

/// The store poll of both instances: its first round is at start, the next one after the test ends.
const SLOW_POLL_MS: u64 = 60_000;
/// How late a frame may be on the other instance: far above the 100 ms promised, far below the poll.
const WITHIN: Duration = Duration::from_secs(2);

/// Instance A (processing on) and instance B (processing off) on one fresh schema, both on NATS with
/// this test's own subject prefix; `None` (SKIPPED) without a test database or NATS server.
async fn two() -> Option<(TestServer, TestServer)> {
    let database = eventdeck::storage::ScratchSchema::VARIABLE;
    let (Ok(nats), Ok(_)) = (std::env::var("EVENTDECK_TEST_NATS_URL"), std::env::var(database)) else {
        println!("SKIPPED: EVENTDECK_TEST_NATS_URL and {database} must both be set");
        return None;
    };
    let tag = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let configure = |processing: bool| {
        let (nats, tag) = (nats.clone(), tag.clone());
        move |config: &mut eventdeck::config::Config| {
            config.nats.url = nats;
            config.nats.subject_prefix = format!("edlive{tag}");
            // No lifecycle publications: this test needs no JetStream stream.
            config.nats.publish = false;
            config.cluster.poll_ms = SLOW_POLL_MS;
            config.processing.enabled = processing;
        }
    };
    let a = BACKEND.scope(Backend::Postgres, TestServer::with_config(configure(true))).await;
    let b = a.beside(configure(false)).await;
    for server in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.get("/health").await.1["nats"] != "connected" {
            assert!(Instant::now() < deadline, "never connected to NATS");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Some((a, b))
}

/// Reads `reader` on a task of its own, noting when each frame arrived, until `events` event frames and
/// `statuses` status frames with status `processed` arrived, or nothing more came for 10 s.
fn watch(mut reader: SseReader, events: usize, statuses: usize) -> tokio::task::JoinHandle<Vec<(Instant, Frame)>> {
    tokio::spawn(async move {
        let mut frames = Vec::new();
        let (mut seen_events, mut seen_statuses) = (0, 0);
        while seen_events < events || seen_statuses < statuses {
            let Some(frame) = reader.next_event(Duration::from_secs(10)).await else { break };
            match frame.event.as_deref() {
                Some("event") => seen_events += 1,
                Some("status") if frame.json()["status"] == "processed" => seen_statuses += 1,
                _ => {}
            }
            frames.push((Instant::now(), frame));
        }
        frames
    })
}

fn seqs(frames: &[(Instant, Frame)]) -> Vec<i64> {
    frames
        .iter()
        .filter(|(_, f)| f.event.as_deref() == Some("event"))
        .map(|(_, f)| f.id.as_deref().expect("an id").parse().expect("a numeric id"))
        .collect()
}

async fn metric(server: &TestServer, series: &str) -> f64 {
    let text = server.client.get(server.url("/metrics")).send().await.expect("GET /metrics").text().await.unwrap();
    text.lines().find_map(|line| line.strip_prefix(series).and_then(|rest| rest.trim().parse().ok())).unwrap_or(0.0)
}

#[tokio::test]
async fn events_and_status_frames_reach_the_other_instance_over_nats_in_order_and_resume_there() {
    let Some((a, b)) = two().await else { return };
    let (status, _) =
        a.post("/api/v1/events/processors", &json!({"processor_name": "audit", "processor_type": "log"})).await;
    assert_eq!(status, StatusCode::CREATED);
    // Instance A's processors are its own; give its copy a moment to hold the new one.
    tokio::time::sleep(Duration::from_millis(1200)).await;

    const FIRST: usize = 30;
    let on_a = watch(a.sse("/api/v1/events/live", &[]).await, FIRST, 0);
    let on_b = watch(b.sse("/api/v1/events/live", &[]).await, FIRST, FIRST);
    let mut posted = HashMap::new();
    for n in 0..FIRST {
        let event = a.create(json!({"event_type": "order.placed", "data": {"n": n}})).await;
        posted.insert(event["seq"].as_i64().unwrap(), Instant::now());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let on_b = on_b.await.unwrap();
    let on_a = on_a.await.unwrap();

    // B shows every event A stored, once each, in seq order, with nothing in between.
    let mut stored: Vec<i64> = posted.keys().copied().collect();
    stored.sort_unstable();
    assert_eq!(seqs(&on_b), stored, "B's live stream: A's events in seq order, no gap, no duplicate");
    assert_eq!(stored.windows(2).filter(|w| w[1] != w[0] + 1).count(), 0, "A stored consecutive seqs: {stored:?}");
    // ... and each well before B's next read of the store: it came over NATS.
    for (arrived, frame) in on_b.iter().filter(|(_, f)| f.event.as_deref() == Some("event")) {
        let seq: i64 = frame.id.as_deref().unwrap().parse().unwrap();
        let late = arrived.duration_since(posted[&seq]);
        assert!(late < WITHIN, "event {seq} reached B {late:?} after its commit on A");
    }
    // The status frames too: each event's `processed`, after the event itself.
    let mut shown = HashSet::new();
    let mut processed = HashSet::new();
    for (arrived, frame) in &on_b {
        match frame.event.as_deref() {
            Some("event") => {
                shown.insert(frame.json()["seq"].as_i64().unwrap());
            }
            Some("status") if frame.json()["status"] == "processed" => {
                let seq = frame.json()["seq"].as_i64().unwrap();
                assert!(shown.contains(&seq), "the status of {seq} came before its event");
                let late = arrived.duration_since(posted[&seq]);
                assert!(late < WITHIN + Duration::from_secs(1), "event {seq} was shown processed on B {late:?} after");
                processed.insert(seq);
            }
            _ => {}
        }
    }
    assert_eq!(processed.len(), FIRST, "every event's `processed` frame reached B");
    assert!(metric(&b, "eventdeck_live_feed_messages_total{outcome=\"received\"}").await > 0.0);
    assert!(metric(&a, "eventdeck_live_feed_messages_total{outcome=\"sent\"}").await > 0.0);

    // A client that read the first half on A resumes on B from there: no gap, no duplicate, and the
    // events stored after it arrive live.
    let a_seqs = seqs(&on_a);
    assert_eq!(a_seqs, stored, "A's own live stream");
    let resume_at = a_seqs[FIRST / 2 - 1].to_string();
    let resumed = b.sse("/api/v1/events/live", &[("Last-Event-ID", resume_at.as_str())]).await;
    const MORE: usize = 10;
    let resumed = watch(resumed, FIRST - FIRST / 2 + MORE, 0);
    for n in 0..MORE {
        let event = a.create(json!({"event_type": "order.placed", "data": {"n": FIRST + n}})).await;
        stored.push(event["seq"].as_i64().unwrap());
        posted.insert(event["seq"].as_i64().unwrap(), Instant::now());
    }
    let resumed = resumed.await.unwrap();
    assert_eq!(seqs(&resumed), stored[FIRST / 2..], "resumed on B after {resume_at}: no gap, no duplicate");
    for (arrived, frame) in resumed.iter().filter(|(_, f)| f.event.as_deref() == Some("event")) {
        let seq: i64 = frame.id.as_deref().unwrap().parse().unwrap();
        assert!(arrived.duration_since(posted[&seq]) < WITHIN, "event {seq} reached the resumed stream late");
    }
    a.stop().await;
    b.stop().await;
}
