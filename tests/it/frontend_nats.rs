//! Frontend events through JetStream (`[ingest] frontend_via_nats`), against the NATS server
//! EVENTDECK_TEST_NATS_URL names (SKIPPED without): the routes answer with ids after the JetStream
//! ack, the shared consumer stores each event once under its id, poison messages become dead letters
//! of kind `ingest` and are not redelivered, and without NATS the routes store directly. Each test has
//! its own stream and subject prefix (deleted at the end), so they run in parallel on one server.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::nats::{Stream, WAIT, connected, nats_url};
use crate::on_every_backend;
use crate::support::{BACKEND, Backend, TestServer};

/// The durable consumer every instance shares.
const CONSUMER: &str = "eventdeck-frontend";

/// A server on `stream` with frontend events through JetStream and no lifecycle publications, so
/// the stream holds only what the routes (and the test) publish; answers once the routes use NATS.
async fn via_nats(stream: &Stream) -> TestServer {
    routed(TestServer::with_config(|config| frontend_through(stream, config)).await).await
}

fn frontend_through(stream: &Stream, config: &mut eventdeck::config::Config) {
    stream.configure(config);
    config.nats.publish = false;
    config.ingest.frontend_via_nats = true;
}

/// `server`, once it is connected and its frontend routes publish to NATS.
async fn routed(server: TestServer) -> TestServer {
    connected(&server).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, health) = server.get("/api/v1/events/frontend/health").await;
        if health["via_nats"] == true {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "frontend events never went through NATS: {health}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server
}

/// Every frontend event in history, by id, with how many times each id is there.
async fn history(server: &TestServer) -> HashMap<String, (usize, Value)> {
    let (status, page) = server.get("/api/v1/events?event_source=frontend&limit=1000").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let mut found: HashMap<String, (usize, Value)> = HashMap::new();
    for event in page["events"].as_array().expect("events") {
        let entry = found.entry(event["event_id"].as_str().unwrap().to_owned()).or_insert((0, event.clone()));
        entry.0 += 1;
    }
    found
}

/// Waits until every id in `ids` is in history, then returns history.
async fn stored(server: &TestServer, ids: &[String]) -> HashMap<String, (usize, Value)> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let found = history(server).await;
        if ids.iter().all(|id| found.contains_key(id)) {
            return found;
        }
        if tokio::time::Instant::now() >= deadline {
            let missing: Vec<&String> = ids.iter().filter(|id| !found.contains_key(*id)).collect();
            panic!(
                "{} of {} events never reached history (of {} there): {missing:?}",
                missing.len(),
                ids.len(),
                found.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the shared consumer has nothing pending and nothing unacknowledged.
async fn drained(stream: &Stream) -> async_nats::jetstream::consumer::Info {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut consumer: async_nats::jetstream::consumer::PullConsumer = stream
            .context
            .get_stream(&stream.name)
            .await
            .expect("stream")
            .get_consumer(CONSUMER)
            .await
            .expect("consumer");
        let info = consumer.info().await.expect("consumer info").clone();
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            return info;
        }
        assert!(tokio::time::Instant::now() < deadline, "the consumer never drained: {info:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Publishes `payload` straight to `subject` with `Nats-Msg-Id: msg_id`, as another service could.
async fn publish_raw(stream: &Stream, subject: String, msg_id: &str, payload: Vec<u8>) {
    let message = PublishMessage::build().payload(payload.into()).message_id(msg_id);
    let ack = stream.context.send_publish(subject, message).await.expect("publish");
    ack.await.expect("JetStream ack");
}

async fn dead_letters(server: &TestServer) -> Vec<Value> {
    let (status, page) = server.get("/api/v1/events/dlq?kind=ingest&limit=100").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["entries"].as_array().expect("entries").clone()
}

on_every_backend! {
    #[tokio::test]
    async fn frontend_events_are_answered_after_the_jetstream_ack_and_stored_once_under_their_ids() {
        let Some(url) = nats_url("frontend_events_are_answered_after_the_jetstream_ack") else { return };
        let stream = Stream::new(&url).await;
        let server = via_nats(&stream).await;

        let (status, one) = server
            .post(
                "/api/v1/events/frontend",
                &json!({"event_type": "button.clicked", "category": "click", "page_url": "/shop",
                        "properties": {"button": "buy"}}),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{one}");
        assert_eq!(one["accepted"], true);
        let (status, many) = server
            .post(
                "/api/v1/events/frontend/batch",
                &json!({"events": [{"event_type": "page.viewed", "category": "page_view"},
                                   {"event_type": "page.viewed", "category": "page_view"},
                                   {"event_type": "form.sent", "category": "form_submit", "session_id": "s1"}],
                        "client_info": {"screen": "1920x1080"}}),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{many}");
        assert_eq!(many["accepted"], 3);
        let mut ids = vec![one["event_id"].as_str().unwrap().to_owned()];
        ids.extend(many["event_ids"].as_array().unwrap().iter().map(|id| id.as_str().unwrap().to_owned()));

        // Each on its subject, with its id as Nats-Msg-Id, in the stream the engine made (publications off).
        let messages = stream.messages(4).await;
        let prefix = &stream.prefix;
        let subjects: HashMap<&str, &str> = messages.iter().map(|m| (m.msg_id.as_str(), m.subject.as_str())).collect();
        assert_eq!(subjects[ids[0].as_str()], format!("{prefix}.frontend.click.button.clicked"));
        assert_eq!(subjects[ids[1].as_str()], format!("{prefix}.frontend.page_view.page.viewed"));
        assert_eq!(subjects[ids[3].as_str()], format!("{prefix}.frontend.form_submit.form.sent"));

        // The consumer stores them under exactly those ids, once each, as a direct POST would.
        let found = stored(&server, &ids).await;
        assert_eq!(found.len(), 4, "{found:?}");
        assert!(found.values().all(|(count, _)| *count == 1), "{found:?}");
        let clicked = &found[&ids[0]].1;
        assert_eq!(clicked["event_type"], "button.clicked");
        assert_eq!(clicked["event_category"], "click");
        assert_eq!(clicked["event_source"], "frontend");
        assert_eq!(clicked["data"], json!({"button": "buy"}));
        assert_eq!(clicked["context"]["page_url"], "/shop");
        assert_eq!(clicked["context"]["ip"], "127.0.0.1");
        let sent = &found[&ids[3]].1;
        assert_eq!(sent["context"]["session_id"], "s1");
        assert_eq!(sent["context"]["client_info"], json!({"screen": "1920x1080"}));
        let (status, by_id) = server.get(&format!("/api/v1/events/{}", ids[0])).await;
        assert_eq!((status, &by_id["event_id"]), (StatusCode::OK, &one["event_id"]));
        drained(&stream).await;

        // Poison: not JSON, and JSON that is no valid event. Each is a dead letter of kind ingest,
        // terminated rather than delivered again.
        publish_raw(&stream, format!("{prefix}.frontend.click.broken"), "poison-1", b"{not json".to_vec()).await;
        let invalid = json!({"event_id": uuid::Uuid::now_v7(), "event_type": "bad..type", "event_source": "frontend",
                             "event_category": "click", "timestamp": "2026-01-02T03:04:05.123456Z"});
        publish_raw(&stream, format!("{prefix}.frontend.click.bad"), "poison-2", invalid.to_string().into_bytes()).await;
        let deadline = tokio::time::Instant::now() + WAIT;
        while dead_letters(&server).await.len() < 2 {
            assert!(tokio::time::Instant::now() < deadline, "the poison messages never reached the DLQ");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let info = drained(&stream).await;
        assert_eq!(info.num_redelivered, 0, "nothing was delivered twice: {info:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let entries = dead_letters(&server).await;
        assert_eq!(entries.len(), 2, "recorded once each: {entries:?}");
        let errors: Vec<&str> = entries.iter().map(|e| e["last_error"].as_str().unwrap()).collect();
        assert!(errors.iter().any(|e| e.contains("not a frontend event message") && e.contains("{not json")), "{errors:?}");
        let bad = entries.iter().find(|e| e["event_id"] == invalid["event_id"]).expect("the invalid event's own id");
        assert!(bad["last_error"].as_str().unwrap().contains("event_type"), "{bad}");
        assert_eq!(bad["event_type"], "bad..type");
        assert_eq!(history(&server).await.len(), 4, "nothing of the poison was stored");

        let metrics = server.client.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
        for line in [
            "eventdeck_frontend_events_total{path=\"jetstream\"} 4",
            "eventdeck_frontend_consumed_total{outcome=\"stored\"} 4",
            "eventdeck_frontend_consumed_total{outcome=\"dead_lettered\"} 2",
        ] {
            assert!(metrics.contains(line), "no `{line}` in the metrics");
        }
        server.stop().await;
        stream.delete().await;
    }
}

#[tokio::test]
async fn a_message_delivered_again_is_stored_once() {
    let Some(url) = nats_url("a_message_delivered_again_is_stored_once") else { return };
    let stream = Stream::new(&url).await;
    let server = via_nats(&stream).await;
    let (status, answer) =
        server.post("/api/v1/events/frontend", &json!({"event_type": "page.viewed", "category": "page_view"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let id = answer["event_id"].as_str().unwrap().to_owned();
    let first = stored(&server, std::slice::from_ref(&id)).await;
    drained(&stream).await;

    // The same message again, as after a crash between the commit and the ack (a new Nats-Msg-Id, so
    // the stream's duplicate window does not drop it before the consumer sees it).
    let message = stream.messages(1).await.remove(0);
    for again in 0..2 {
        publish_raw(
            &stream,
            message.subject.clone(),
            &format!("{id}.again.{again}"),
            message.payload.to_string().into_bytes(),
        )
        .await;
    }
    assert_eq!(stream.count().await, 3);
    let info = drained(&stream).await;
    assert_eq!(info.delivered.stream_sequence, 3, "the consumer took all three: {info:?}");
    let found = history(&server).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[&id].0, 1, "stored once");
    assert_eq!(found[&id].1, first[&id].1, "the stored event is unchanged");
    assert!(dead_letters(&server).await.is_empty());
    let metrics = server.client.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("eventdeck_frontend_consumed_total{outcome=\"duplicate\"} 2"), "{metrics}");

    // An event JetStream acknowledged to a route while no consumer ran (its instance died before
    // storing it) is stored when an instance starts; the old message once more is still a duplicate.
    let late_id = uuid::Uuid::now_v7().to_string();
    let late = json!({"event_id": late_id, "event_type": "page.viewed", "event_source": "frontend",
                      "event_category": "page_view", "timestamp": "2026-01-02T03:04:05.123456Z"});
    let subject = message.subject.clone();
    let server = server
        .restart_around(|_| async {
            publish_raw(&stream, subject.clone(), &late_id, late.to_string().into_bytes()).await;
            publish_raw(&stream, subject, &format!("{id}.again.stopped"), message.payload.to_string().into_bytes())
                .await;
        })
        .await;
    connected(&server).await;
    stored(&server, std::slice::from_ref(&late_id)).await;
    drained(&stream).await;
    let found = history(&server).await;
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!((found[&id].0, found[&late_id].0), (1, 1));
    server.stop().await;
    stream.delete().await;
}

#[tokio::test]
async fn with_nats_unreachable_the_frontend_routes_store_directly() {
    let server = TestServer::with_config(|config| {
        config.nats.url = "nats://127.0.0.1:9".into();
        config.ingest.frontend_via_nats = true;
    })
    .await;
    let (_, health) = server.get("/api/v1/events/frontend/health").await;
    assert_eq!(health["nats"], "disconnected", "{health}");
    assert_eq!(health["via_nats"], false, "{health}");

    let (status, one) = server.post("/api/v1/events/frontend", &json!({"event_type": "button.clicked"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{one}");
    let (status, many) = server
        .post("/api/v1/events/frontend/batch", &json!({"events": [{"event_type": "a.b"}, {"event_type": "c.d"}]}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{many}");
    // Stored before the answer: readable at once.
    let mut ids = vec![one["event_id"].clone()];
    ids.extend(many["event_ids"].as_array().unwrap().iter().cloned());
    for id in &ids {
        let (status, event) = server.get(&format!("/api/v1/events/{}", id.as_str().unwrap())).await;
        assert_eq!(status, StatusCode::OK, "{id}: {event}");
        assert_eq!(event["event_source"], "frontend");
    }
    let metrics = server.client.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("eventdeck_frontend_events_total{path=\"direct\"} 3"), "{metrics}");
    server.stop().await;
}

/// Two instances on one PostgreSQL schema share the durable consumer: events POSTed to either are
/// stored once each, also those published while one of them stops (what it had fetched and not yet
/// acknowledged goes to the other, and storing by `event_id` makes a second delivery harmless).
#[tokio::test]
async fn two_instances_share_the_consumer_and_store_each_event_once_while_one_stops() {
    let Some(url) = nats_url("two_instances_share_the_consumer") else { return };
    if std::env::var(eventdeck::storage::ScratchSchema::VARIABLE).is_err() {
        println!("SKIPPED: {} is not set", eventdeck::storage::ScratchSchema::VARIABLE);
        return;
    }
    let stream = Stream::new(&url).await;
    let first = BACKEND.scope(Backend::Postgres, TestServer::with_config(|c| frontend_through(&stream, c))).await;
    let first = routed(first).await;
    let second = routed(first.beside(|c| frontend_through(&stream, c)).await).await;

    let post_to = |server: &TestServer, n: usize| {
        let (client, url) = (server.client.clone(), server.url("/api/v1/events/frontend"));
        async move {
            let mut ids = Vec::with_capacity(n);
            for i in 0..n {
                let body = json!({"event_type": "page.viewed", "category": "page_view", "page_url": format!("/p/{i}")});
                let answer = client.post(&url).json(&body).send().await.expect("POST");
                assert_eq!(answer.status(), StatusCode::ACCEPTED);
                let answer: Value = answer.json().await.expect("JSON");
                ids.push(answer["event_id"].as_str().unwrap().to_owned());
            }
            ids
        }
    };
    let (mut ids, more) = tokio::join!(post_to(&first, 100), post_to(&second, 100));
    ids.extend(more);
    // The first instance stops while the second takes 100 more.
    let (more, ()) = tokio::join!(post_to(&second, 100), first.stop());
    ids.extend(more);

    let found = stored(&second, &ids).await;
    assert_eq!(found.len(), 300, "only what was POSTed is stored");
    let twice: Vec<_> = found.iter().filter(|(_, (count, _))| *count != 1).collect();
    assert!(twice.is_empty(), "stored more than once: {twice:?}");
    drained(&stream).await;
    assert_eq!(stream.count().await, 300, "one message a POST");
    second.stop().await;
    stream.delete().await;
}
