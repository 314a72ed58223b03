//! The console without a terminal: every pane drawn on ratatui's `TestBackend` from fixed data, key
//! sequences driven through `App::update` (filter editing, toggles, confirmations, the replay dialog),
//! and the effects run against a real embedded engine.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use serde_json::json;

use eventdeck::domain::delivery::{DlqGroup, DlqGroupKey, DlqGroups, DlqSelector};
use eventdeck::domain::replay::ReplaySelection;
use eventdeck::domain::{
    Counters, DeadLetter, DeadLetterKind, DlqId, Event, EventCategory, EventFilter, EventId, EventSource, EventStatus,
    NewEvent, Processor, ProcessorType, Projection, ReplayId, ReplayProgress, ReplayStarted, ReplayStatus,
    ReplayTarget, RetryPolicy, Statistics, Subscription, SubscriptionId, Timestamp, TypePattern,
};
use eventdeck::service::{
    Cluster, DlqAction, DlqPage, EventService, FeedItem, Health, Instance, InstanceClaims, StorageHealth, StreamEvents,
};
use eventdeck::storage::StreamSummary;
use eventdeck::tui::action::{Action, EventDetail, FeedBatch, Response};
use eventdeck::tui::app::App;
use eventdeck::tui::effects::{self, Effect, Runner};
use eventdeck::tui::popups::Popup;
use eventdeck::tui::popups::replay::{ReplayPlan, ReplayStage};
use eventdeck::tui::{Origin, OriginMode, Settings, ui};

use crate::support::TestServer;

fn now() -> Timestamp {
    Timestamp::parse("2026-03-10T12:00:00Z").unwrap()
}

fn at(seconds_ago: i64) -> Timestamp {
    Timestamp::from_micros(now().as_micros() - seconds_ago * 1_000_000)
}

fn event(seq: i64, event_type: &str, source: EventSource, status: EventStatus) -> Event {
    Event {
        event_id: EventId::new_v7(),
        seq,
        event_type: event_type.to_owned(),
        event_source: source,
        event_category: EventCategory::Order,
        user_id: Some(format!("user-{seq}")),
        tenant_id: None,
        stream_id: None,
        stream_version: None,
        data: json!({"n": seq}).as_object().cloned().unwrap(),
        metadata: Default::default(),
        context: Default::default(),
        correlation_id: None,
        idempotency_key: None,
        status,
        retry_count: 0,
        error_message: None,
        timestamp: at(100 - seq),
        created_at: at(100 - seq),
        processed_at: None,
    }
}

fn subscription(name: &str, enabled: bool) -> Arc<Subscription> {
    Arc::new(Subscription {
        subscription_id: SubscriptionId::new_v7(),
        subscriber_name: name.to_owned(),
        subscriber_type: "webhook".to_owned(),
        event_types: vec![TypePattern::parse("t", "order.>").unwrap()],
        event_sources: vec![],
        event_categories: vec![],
        callback_url: format!("http://127.0.0.1:9/{name}"),
        has_secret: false,
        retry_policy: RetryPolicy::default(),
        enabled,
        disabled_reason: None,
        created_at: at(3600),
        updated_at: at(3600),
        secret: None,
        start_seq: 0,
    })
}

fn processor(name: &str, enabled: bool) -> Arc<Processor> {
    let mut processor = Processor::new(name, ProcessorType::Log, at(3600));
    processor.enabled = enabled;
    processor.priority = 5;
    processor.filters.event_type = Some(TypePattern::parse("t", "order.*").unwrap());
    processor.processed_count = 1234;
    processor.failed_count = 2;
    processor.avg_duration_ms = 1.5;
    Arc::new(processor)
}

fn dead_letter(event_type: &str, subscription: &Subscription, seconds_ago: i64) -> DeadLetter {
    DeadLetter {
        dlq_id: DlqId::new_v7(),
        kind: DeadLetterKind::Delivery,
        event_id: EventId::new_v7(),
        event_type: event_type.to_owned(),
        subscription_id: Some(subscription.subscription_id),
        processor_id: None,
        delivery_id: None,
        attempts: 4,
        last_status_code: Some(503),
        last_error: Some("service unavailable".to_owned()),
        first_failed_at: at(seconds_ago + 60),
        last_failed_at: at(seconds_ago),
        created_at: at(seconds_ago),
        attempt_history: None,
    }
}

fn statistics() -> Statistics {
    let mut counters = Counters::default();
    for (name, n) in [("order.created", 600), ("order.paid", 300), ("user.login", 100)] {
        counters.by_type.insert(name.into(), n);
    }
    counters.by_source.insert("backend".into(), 700);
    counters.by_source.insert("frontend".into(), 300);
    counters.by_category.insert("order".into(), 900);
    counters.by_category.insert("user_action".into(), 100);
    counters.by_status.insert("processed".into(), 950);
    counters.by_status.insert("failed".into(), 50);
    counters.dlq_size = 3;
    counters.subscriptions_active = 2;
    let mut stats = Statistics::from_counters(counters, now().to_datetime().date_naive(), 42.5);
    stats.average_processing_time = 1.25;
    stats.processing_latency_ms.p50 = 3.0;
    stats.processing_latency_ms.p95 = 9.5;
    stats.processing_latency_ms.p99 = 21.0;
    stats.processors_enabled = 1;
    stats.delivery_success_rate = 97.5;
    stats
}

fn health() -> Health {
    Health {
        status: "ok",
        version: "0.1.0",
        uptime_s: 5,
        instance_id: "deck-1".into(),
        storage: StorageHealth { backend: "sqlite", ok: true },
        nats: "disabled",
    }
}

fn origin(mode: OriginMode) -> Origin {
    let mut origin = Origin::new(mode, Some("http://127.0.0.1:8686".to_owned()));
    origin.log_file = Some("/var/log/eventdeck-console.log".into());
    origin
}

/// A console as it is right after start, 150 × 30.
fn app_with(mode: OriginMode) -> App {
    let (mut app, effects) = App::new(origin(mode), Settings { live_capacity: 50 }, now());
    assert_eq!(
        effects,
        [
            Effect::StartFeed { generation: 1, filter: EventFilter::default() },
            Effect::Statistics,
            Effect::Health,
            Effect::Cluster,
            Effect::Processors,
            Effect::Subscriptions
        ]
    );
    app.update(Action::Resize(150, 30));
    app
}

fn app() -> App {
    app_with(OriginMode::Embedded)
}

fn respond(app: &mut App, response: Response) -> Vec<Effect> {
    app.update(Action::Response(Box::new(response)))
}

fn feed(app: &mut App, items: Vec<FeedItem>) {
    let generation = app.live.generation;
    app.update(Action::Feed(FeedBatch { generation, items, dropped: 0, backfill: false }));
}

fn stored(events: impl IntoIterator<Item = Event>) -> Vec<FeedItem> {
    events.into_iter().map(|e| FeedItem::Stored(Arc::new(e))).collect()
}

fn press(app: &mut App, code: KeyCode) -> Vec<Effect> {
    let modifiers = match code {
        KeyCode::Char(c) if c.is_ascii_uppercase() => KeyModifiers::SHIFT,
        _ => KeyModifiers::NONE,
    };
    app.handle_key(KeyEvent::new(code, modifiers))
}

fn char(app: &mut App, c: char) -> Vec<Effect> {
    press(app, KeyCode::Char(c))
}

fn type_text(app: &mut App, text: &str) {
    for c in text.chars() {
        assert!(char(app, c).is_empty());
    }
}

/// The screen as text, one line per row.
fn screen(app: &App) -> String {
    let mut terminal = Terminal::new(TestBackend::new(app.size.0, app.size.1)).unwrap();
    terminal.draw(|frame| ui::draw(frame, app)).unwrap();
    let buffer = terminal.backend().buffer();
    let mut text = String::new();
    for y in 0..buffer.area.height {
        for x in 0..buffer.area.width {
            text.push_str(buffer[(x, y)].symbol());
        }
        text.push('\n');
    }
    text
}

fn assert_shows(screen: &str, expected: &[&str]) {
    for needle in expected {
        assert!(screen.contains(needle), "the screen does not show {needle:?}:\n{screen}");
    }
}

/// The line of the screen that contains `needle`.
fn line_with<'a>(screen: &'a str, needle: &str) -> &'a str {
    screen.lines().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("no line with {needle:?}:\n{screen}"))
}

/// A console with statistics, health, two subscriptions and two processors loaded.
fn loaded_app() -> (App, Vec<Arc<Subscription>>, Vec<Arc<Processor>>) {
    let mut app = app();
    let subscriptions = vec![subscription("orders-to-fulfilment", true), subscription("alerts-pager", false)];
    let processors = vec![processor("audit-log", true), processor("enrich", false)];
    respond(&mut app, Response::Statistics(Ok(statistics())));
    respond(&mut app, Response::Health(health()));
    respond(&mut app, Response::Processors(Ok(processors.clone())));
    let counts = HashMap::from([(subscriptions[0].subscription_id, 2), (subscriptions[1].subscription_id, 0)]);
    respond(&mut app, Response::Subscriptions { list: Ok(subscriptions.clone()), dlq_counts: counts });
    (app, subscriptions, processors)
}

#[test]
fn an_empty_console_says_how_to_get_events_in() {
    let mut app = app();
    respond(&mut app, Response::Health(health()));
    let cluster = Cluster {
        instances: (0..3)
            .map(|i| Instance {
                instance_id: format!("deck-{i}"),
                addr: format!("10.0.0.{i}:8686"),
                version: "0.1.0".into(),
                started_at: now(),
                last_seen: now(),
                claims: InstanceClaims::default(),
            })
            .collect(),
    };
    respond(&mut app, Response::Cluster(Ok(cluster)));
    let text = screen(&app);
    assert_shows(
        &text,
        &[
            "1 Live 0",
            "Live · 0 events · 0.0/s",
            "No events yet",
            "curl -X POST http://127.0.0.1:8686/api/v1/events/create",
            "eventdeck demo",
        ],
    );
    let status = text.lines().last().unwrap();
    assert_shows(status, &["EMBEDDED", "http://127.0.0.1:8686", "sqlite · 3 instances", "NATS disabled"]);
}

#[test]
fn live_pane_follows_new_events_newest_at_the_bottom_with_the_rate() {
    let mut app = app();
    feed(&mut app, stored((1..=3).map(|seq| event(seq, "order.created", EventSource::Backend, EventStatus::Pending))));
    app.update(Action::Tick(now()));
    feed(&mut app, stored([event(4, "payment.failed", EventSource::Frontend, EventStatus::Failed)]));
    let text = screen(&app);
    assert_shows(
        &text,
        &["1 Live 4", "Live · 4 events · 3.0/s", "Time (UTC)", "payment.failed", "user-4", "{\"n\":4}"],
    );
    let order = |needle: &str| text.find(needle).unwrap();
    assert!(order("user-1") < order("user-3") && order("user-3") < order("user-4"), "newest last:\n{text}");
    assert!(line_with(&text, "payment.failed").contains("failed"));

    // A status change shows on the event's row; the ring keeps at most its capacity.
    let change = eventdeck::service::StatusChange {
        event_id: app.live.events[0].event_id,
        seq: 1,
        event_type: "order.created".into(),
        status: EventStatus::Processed,
        error_message: None,
    };
    feed(&mut app, vec![FeedItem::Status(change)]);
    assert!(line_with(&screen(&app), "user-1 ").contains("processed"));
    feed(
        &mut app,
        stored((5..=120).map(|seq| event(seq, "order.created", EventSource::Backend, EventStatus::Pending))),
    );
    assert_eq!(app.live.events.len(), 50, "the ring buffer is bounded");
    assert_eq!(app.live.events.front().unwrap().seq, 71);
}

#[test]
fn space_pauses_and_resumes_the_live_pane() {
    let mut app = app();
    feed(&mut app, stored([event(1, "a.b", EventSource::Backend, EventStatus::Pending)]));
    char(&mut app, ' ');
    feed(&mut app, stored((2..=4).map(|seq| event(seq, "a.b", EventSource::Backend, EventStatus::Pending))));
    assert_eq!(app.live.events.len(), 1);
    assert_shows(&screen(&app), &["PAUSED (+3 new)"]);
    char(&mut app, ' ');
    assert_eq!(app.live.events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert!(!screen(&app).contains("PAUSED"));
}

#[test]
fn editing_the_live_filter_restarts_the_feed_and_drops_old_batches() {
    let mut app = app();
    feed(&mut app, stored([event(1, "a.b", EventSource::Backend, EventStatus::Pending)]));
    assert!(char(&mut app, '/').is_empty());
    assert!(matches!(app.popup, Some(Popup::Filter(_))));
    assert_shows(&screen(&app), &["Live filter", "Type pattern", "Source", "Text in data"]);
    type_text(&mut app, "order.*");
    press(&mut app, KeyCode::Tab);
    type_text(&mut app, "front");
    let effects = press(&mut app, KeyCode::Enter);
    let filter = EventFilter {
        event_type: Some(TypePattern::parse("t", "order.*").unwrap()),
        event_source: Some(EventSource::Frontend),
        ..EventFilter::default()
    };
    assert_eq!(effects, [Effect::StartFeed { generation: 2, filter }]);
    assert!(app.popup.is_none());
    assert!(app.live.events.is_empty(), "events of the old filter are cleared");
    // A batch from the replaced feed is ignored.
    app.update(Action::Feed(FeedBatch {
        generation: 1,
        items: stored([event(2, "x.y", EventSource::Backend, EventStatus::Pending)]),
        dropped: 0,
        backfill: false,
    }));
    assert!(app.live.events.is_empty());
    assert_shows(&screen(&app), &["filter type=order.*  source=frontend", "No new event matches the filter yet"]);
}

#[test]
fn a_bad_filter_value_keeps_the_form_open_and_says_what_is_accepted() {
    let mut app = app();
    char(&mut app, '/');
    press(&mut app, KeyCode::Tab);
    type_text(&mut app, "mainframe");
    assert!(press(&mut app, KeyCode::Enter).is_empty());
    assert!(matches!(app.popup, Some(Popup::Filter(_))));
    assert_shows(&screen(&app), &["Source: unknown value `mainframe`; accepted: frontend, backend"]);
    press(&mut app, KeyCode::Esc);
    assert!(app.popup.is_none());
}

#[test]
fn enter_opens_the_event_with_its_results_and_attempts() {
    let mut app = app();
    let first = event(1, "order.created", EventSource::Backend, EventStatus::Processed);
    feed(&mut app, stored([first.clone(), event(2, "order.paid", EventSource::Backend, EventStatus::Pending)]));
    // Up selects the newest, Up again the one before.
    press(&mut app, KeyCode::Up);
    press(&mut app, KeyCode::Up);
    let effects = press(&mut app, KeyCode::Enter);
    assert_eq!(effects, [Effect::EventDetail(first.event_id)]);
    assert_shows(&screen(&app), &["Event #1 · order.created", "loading…"]);
    let detail = EventDetail {
        event_id: first.event_id,
        event: Ok(Arc::new(first.clone())),
        results: Err(eventdeck::service::Error::Unavailable("no processors here".into())),
        attempts: Ok(vec![]),
    };
    respond(&mut app, Response::EventDetail(Box::new(detail)));
    app.update(Action::Resize(120, 50));
    let text = screen(&app);
    assert_shows(&text, &["\"event\": {", "\"event_type\": \"order.created\"", "\"processing_results\": {"]);
    assert_shows(
        &text,
        &["\"unavailable\": \"storage is unavailable: no processors here\"", "\"delivery_attempts\": []"],
    );
    // Scrolling stops at the end; Esc closes.
    for _ in 0..100 {
        press(&mut app, KeyCode::Down);
    }
    assert_shows(&screen(&app), &["\"delivery_attempts\": []"]);
    press(&mut app, KeyCode::Esc);
    assert!(app.popup.is_none());
}

#[test]
fn history_pane_pages_with_the_total() {
    let mut app = app();
    let effects = char(&mut app, '2');
    let [Effect::Query { request, query }] = effects.as_slice() else { panic!("a query expected: {effects:?}") };
    assert_eq!((query.limit, query.offset), (100, 0));
    let events: Vec<Event> =
        (1..=100).rev().map(|seq| event(seq, "order.created", EventSource::Backend, EventStatus::Processed)).collect();
    respond(
        &mut app,
        Response::History { request: *request, result: Ok(eventdeck::domain::EventPage { events, total: 250 }) },
    );
    assert_shows(&screen(&app), &["2 History 250", "History · 250 total · 1–100", "filter none", "user-100"]);
    let effects = char(&mut app, 'n');
    let [Effect::Query { query, .. }] = effects.as_slice() else { panic!("a query expected") };
    assert_eq!(query.offset, 100);
}

#[test]
fn history_shows_archived_events_in_their_colour_and_a_archives_after_confirming_the_count() {
    let mut app = app();
    let effects = char(&mut app, '2');
    let [Effect::Query { request, .. }] = effects.as_slice() else { panic!("a query expected: {effects:?}") };
    let events = vec![
        event(2, "order.paid", EventSource::Backend, EventStatus::Processed),
        event(1, "order.created", EventSource::Backend, EventStatus::Archived),
    ];
    respond(
        &mut app,
        Response::History { request: *request, result: Ok(eventdeck::domain::EventPage { events, total: 2 }) },
    );

    // The archived event's whole row is in the archived colour; the other's type is not.
    let mut terminal = Terminal::new(TestBackend::new(app.size.0, app.size.1)).unwrap();
    terminal.draw(|frame| ui::draw(frame, &app)).unwrap();
    let buffer = terminal.backend().buffer().clone();
    let fg_of = |needle: &str| {
        let text = screen(&app);
        let (y, line) = text.lines().enumerate().find(|(_, l)| l.contains(needle)).expect("the row is shown");
        let x = line[..line.find(needle).unwrap()].chars().count() as u16;
        buffer[(x, y as u16)].fg
    };
    let archived = eventdeck::tui::theme::status(EventStatus::Archived).fg.unwrap();
    assert_eq!(fg_of("order.created"), archived);
    assert_ne!(fg_of("order.paid"), archived);

    // A: count first, then ask with the count, then archive.
    let effects = char(&mut app, 'A');
    let [Effect::CountArchivable(before)] = effects.as_slice() else { panic!("a count expected: {effects:?}") };
    let before = *before;
    assert!(respond(&mut app, Response::ArchiveCount(Ok((before, 1234)))).is_empty());
    assert_shows(&screen(&app), &["Archive 1,234 events", "1,234 processed or failed events before"]);
    assert!(press(&mut app, KeyCode::Esc).is_empty(), "no answers no");
    char(&mut app, 'A');
    respond(&mut app, Response::ArchiveCount(Ok((before, 1234))));
    assert_eq!(char(&mut app, 'y'), [Effect::Archive(before)]);
    let report = eventdeck::domain::archive::ArchiveReport { archived: 1234, files: vec!["f".into(); 3], deleted: 0 };
    let effects = respond(&mut app, Response::Archived(Ok(report)));
    assert!(matches!(effects.as_slice(), [Effect::Query { .. }]), "the page is read again: {effects:?}");
    assert_shows(&screen(&app), &["archived 1,234 events into 3 files"]);

    // Nothing to archive: no question.
    char(&mut app, 'A');
    assert!(respond(&mut app, Response::ArchiveCount(Ok((before, 0)))).is_empty());
    assert!(app.popup.is_none());
    assert_shows(&screen(&app), &["nothing to archive"]);
}

#[test]
fn history_filter_form_takes_status_stream_and_time() {
    let mut app = app();
    char(&mut app, '2');
    char(&mut app, 'f');
    assert_shows(&screen(&app), &["History filter", "Status", "Stream id", "From", "To"]);
    // Type pattern, Source, Category, Status.
    for _ in 0..3 {
        press(&mut app, KeyCode::Tab);
    }
    type_text(&mut app, "failed");
    press(&mut app, KeyCode::Tab);
    press(&mut app, KeyCode::Tab);
    type_text(&mut app, "order:42");
    press(&mut app, KeyCode::Tab);
    type_text(&mut app, "2h");
    let effects = press(&mut app, KeyCode::Enter);
    let [Effect::Query { query, .. }] = effects.as_slice() else { panic!("a query expected: {effects:?}") };
    assert_eq!(query.filter.status, Some(EventStatus::Failed));
    assert_eq!(query.filter.stream_id.as_deref(), Some("order:42"));
    assert_eq!(query.filter.start_time, Some(at(7200)));
}

#[test]
fn replay_dialog_runs_a_dry_run_asks_then_follows_progress() {
    let (mut app, subscriptions, _) = loaded_app();
    let effects = char(&mut app, '2');
    let [Effect::Query { request, .. }] = effects.as_slice() else { panic!("a query expected") };
    let events: Vec<Event> =
        (1..=3).map(|seq| event(seq, "order.created", EventSource::Backend, EventStatus::Processed)).collect();
    respond(
        &mut app,
        Response::History {
            request: *request,
            result: Ok(eventdeck::domain::EventPage { events: events.clone(), total: 3 }),
        },
    );
    char(&mut app, '/');
    type_text(&mut app, "order.*");
    press(&mut app, KeyCode::Enter);

    // R: the dry run of what the filter selects.
    let effects = char(&mut app, 'R');
    let [Effect::PrepareReplay(ReplayPlan::Direct(request))] = effects.as_slice() else {
        panic!("a direct replay plan expected: {effects:?}")
    };
    assert_eq!(request.selection, ReplaySelection::TimeRange { start: None, end: None });
    assert_eq!(request.event_type.as_ref().unwrap().as_str(), "order.*");
    assert!(request.dry_run);
    assert_shows(&screen(&app), &["Replay", "Selection  type=order.*", "counting the events"]);
    // Confirming before the count is in does nothing.
    assert!(char(&mut app, 'y').is_empty());

    let sample = events.into_iter().map(Arc::new).collect();
    let started = ReplayStarted { replay_id: None, status: ReplayStatus::DryRun, events_count: 1234, events: sample };
    respond(&mut app, Response::ReplayDryRun(Ok((request.clone(), started))));
    assert_shows(&screen(&app), &["Dry run: 1,234 events", "order.created", "Replay 1,234 events to this target?"]);

    // → picks the first subscription as the target; y starts the replay for real.
    press(&mut app, KeyCode::Right);
    assert_shows(&screen(&app), &["◀ subscription orders-to-fulfilment ▶"]);
    let effects = char(&mut app, 'y');
    let [Effect::StartReplay(real)] = effects.as_slice() else { panic!("a replay expected: {effects:?}") };
    assert!(!real.dry_run && real.confirm);
    assert_eq!(real.target, Some(ReplayTarget::Subscription { subscription_id: subscriptions[0].subscription_id }));

    let replay_id = ReplayId::new_v7();
    let running =
        ReplayStarted { replay_id: Some(replay_id), status: ReplayStatus::Running, events_count: 1234, events: vec![] };
    respond(&mut app, Response::ReplayStarted(Ok(running)));
    assert!(app.update(Action::Tick(now())).contains(&Effect::ReplayProgress(replay_id)));
    let mut progress = ReplayProgress {
        replay_id,
        status: ReplayStatus::Running,
        events_count: 1234,
        total: 1234,
        done: 617,
        failed: 3,
        started_at: now(),
        finished_at: None,
        error: None,
    };
    respond(&mut app, Response::ReplayProgress(Ok(progress.clone())));
    assert_shows(&screen(&app), &["50% · 617 / 1,234 work items · 3 failed", "██████"]);

    // The feed's replay progress ends it.
    progress.status = ReplayStatus::Completed;
    progress.done = 1234;
    feed(&mut app, vec![FeedItem::Replay(Arc::new(progress))]);
    let Some(Popup::Replay(dialog)) = &app.popup else { panic!("the dialog stays open") };
    assert!(matches!(dialog.stage, ReplayStage::Finished(_)));
    assert_shows(&screen(&app), &["Replay completed: 1,234 of 1,234 work items done, 3 failed."]);
    press(&mut app, KeyCode::Esc);
    assert!(app.popup.is_none());
}

#[test]
fn a_replay_closed_while_running_goes_on_in_the_status_bar() {
    let mut app = app();
    char(&mut app, '2');
    char(&mut app, 'R');
    let request = match &app.popup {
        Some(Popup::Replay(_)) => eventdeck::domain::ReplayRequest {
            selection: ReplaySelection::TimeRange { start: None, end: None },
            event_type: None,
            event_source: None,
            target: None,
            dry_run: true,
            confirm: false,
        },
        other => panic!("the replay dialog expected, got {other:?}"),
    };
    let started = ReplayStarted { replay_id: None, status: ReplayStatus::DryRun, events_count: 10, events: vec![] };
    respond(&mut app, Response::ReplayDryRun(Ok((request, started))));
    char(&mut app, 'y');
    let replay_id = ReplayId::new_v7();
    respond(
        &mut app,
        Response::ReplayStarted(Ok(ReplayStarted {
            replay_id: Some(replay_id),
            status: ReplayStatus::Running,
            events_count: 10,
            events: vec![],
        })),
    );
    press(&mut app, KeyCode::Esc);
    assert!(app.popup.is_none());
    let progress = ReplayProgress {
        replay_id,
        status: ReplayStatus::Running,
        events_count: 10,
        total: 10,
        done: 4,
        failed: 0,
        started_at: now(),
        finished_at: None,
        error: None,
    };
    respond(&mut app, Response::ReplayProgress(Ok(progress.clone())));
    assert_shows(screen(&app).lines().last().unwrap(), &["replay 40%"]);
    respond(
        &mut app,
        Response::ReplayProgress(Ok(ReplayProgress { status: ReplayStatus::Completed, done: 10, ..progress })),
    );
    assert!(app.background_replay.is_none());
    assert_shows(screen(&app).lines().last().unwrap(), &["replay completed: 10 done, 0 failed"]);
}

#[test]
fn statistics_pane_shows_rates_bars_latency_and_the_dlq() {
    let (mut app, _, _) = loaded_app();
    char(&mut app, '3');
    app.update(Action::Resize(140, 40));
    let text = screen(&app);
    assert_shows(
        &text,
        &[
            "Statistics · 1,000 events",
            "Ingest rate, last 5 minutes · now 42.5/s",
            "By type (top 10)",
            "order.created",
            "By source",
            "frontend",
            "By category",
            "user_action",
            "processing rate",
            "95.0%",
            "error rate",
            "5.0%",
            "latency p50",
            "3.0 ms",
            "latency p95",
            "9.5 ms",
            "latency p99",
            "21.0 ms",
            "DLQ size",
            "delivery success",
            "97.5%",
        ],
    );
    assert!(line_with(&text, "order.created").contains('█'), "bars are drawn");
    assert!(line_with(&text, "processed ").contains("950"));
    assert_shows(text.lines().last().unwrap(), &["42.5/s in", "DLQ 3"]);

    // The archive's size and the oldest event kept.
    let mut stats = statistics();
    stats.archive = Some(eventdeck::domain::archive::ArchiveStats {
        files: 12,
        bytes: 3 * 1024 * 1024,
        oldest_event: Some(Timestamp::parse("2026-01-02T03:04:05Z").unwrap()),
    });
    respond(&mut app, Response::Statistics(Ok(stats)));
    let text = screen(&app);
    assert_shows(line_with(&text, "archive "), &["3.0 MiB in 12 files"]);
    assert_shows(line_with(&text, "oldest kept"), &["2026-01-02T03:04:05"]);
}

#[test]
fn dlq_pane_lists_entries_and_retries_one_after_confirming() {
    let (mut app, subscriptions, _) = loaded_app();
    let effects = char(&mut app, '4');
    let [Effect::DeadLetters { request, query }] = effects.as_slice() else { panic!("a DLQ load expected") };
    assert_eq!(query.subscription_id, None);
    let entries = vec![
        dead_letter("order.created", &subscriptions[0], 30),
        dead_letter("order.paid", &subscriptions[0], 600),
        dead_letter("alert.raised", &subscriptions[1], 7200),
    ];
    respond(
        &mut app,
        Response::DeadLetters { request: *request, result: Ok(DlqPage { entries: entries.clone(), total: 3 }) },
    );
    let text = screen(&app);
    assert_shows(&text, &["4 DLQ 3", "DLQ · 3 entries", "Kind", "Target", "Attempts", "Last status / error", "Age"]);
    let row = line_with(&text, "order.created");
    assert_shows(row, &["delivery", "orders-to-fulfilment", "4", "503 service unavailable", "30s"]);
    assert!(!row.contains("503 503"));
    assert_shows(line_with(&text, "alert.raised"), &["alerts-pager", "2h"]);

    // r asks first; n does nothing; r then y retries that one entry.
    assert!(char(&mut app, 'r').is_empty());
    assert_shows(&screen(&app), &["Retry 1 dead letter", "1 entry leaves the queue"]);
    assert!(char(&mut app, 'n').is_empty());
    assert!(app.popup.is_none());
    char(&mut app, 'r');
    let effects = char(&mut app, 'y');
    assert_eq!(effects, [Effect::RetryDeadLetters(DlqSelector::Ids(vec![entries[0].dlq_id]))]);
    let effects = respond(&mut app, Response::Retried(Ok(1)));
    assert!(matches!(effects.as_slice(), [Effect::DeadLetters { .. }]), "the list is reloaded");
}

#[test]
fn dlq_marks_retry_many_with_the_count_and_discard_asks_first() {
    let (mut app, subscriptions, _) = loaded_app();
    let effects = char(&mut app, '4');
    let [Effect::DeadLetters { request, .. }] = effects.as_slice() else { panic!("a DLQ load expected") };
    let entries: Vec<DeadLetter> = (0..3).map(|i| dead_letter("order.created", &subscriptions[0], 10 * i)).collect();
    respond(
        &mut app,
        Response::DeadLetters { request: *request, result: Ok(DlqPage { entries: entries.clone(), total: 3 }) },
    );

    // No marks: R retries all shown, and says how many.
    char(&mut app, 'R');
    assert_shows(&screen(&app), &["Retry 3 dead letters", "all 3 shown entries", "3 entries leave the queue"]);
    press(&mut app, KeyCode::Esc);

    // Space marks and moves down: mark the first two.
    char(&mut app, ' ');
    char(&mut app, ' ');
    assert_shows(&screen(&app), &["DLQ · 3 entries · 2 marked", "●"]);
    char(&mut app, 'R');
    assert_shows(&screen(&app), &["Retry 2 dead letters", "the 2 marked entries"]);
    let effects = press(&mut app, KeyCode::Enter);
    let mut marked = vec![entries[0].dlq_id, entries[1].dlq_id];
    marked.sort();
    assert_eq!(effects, [Effect::RetryDeadLetters(DlqSelector::Ids(marked))]);

    // d asks, y discards the selected (third) entry; the answer removes it.
    char(&mut app, 'd');
    assert_shows(&screen(&app), &["Discard 1 dead letter", "the event itself stays stored"]);
    let effects = char(&mut app, 'y');
    assert_eq!(effects, [Effect::DiscardDeadLetter(entries[2].dlq_id)]);
    respond(&mut app, Response::Discarded { id: entries[2].dlq_id, result: Ok(()) });
    assert_eq!(app.dlq.entries.len(), 2);

    // The feed's dead-letter changes apply at once.
    feed(&mut app, vec![FeedItem::DeadLetter { action: DlqAction::Removed, entry: Arc::new(entries[0].clone()) }]);
    let added = dead_letter("order.refunded", &subscriptions[0], 1);
    feed(&mut app, vec![FeedItem::DeadLetter { action: DlqAction::Added, entry: Arc::new(added) }]);
    let text = screen(&app);
    assert_shows(&text, &["DLQ · 2 entries", "order.refunded"]);
}

#[test]
fn names_not_ids_and_kept_current_whichever_pane_is_open() {
    let mut app = app();
    // Until the first answer the tabs say "not known yet", not 0.
    let tabs = screen(&app).lines().next().unwrap().to_owned();
    assert_shows(&tabs, &["5 Processors …", "6 Subscriptions …"]);
    let first = subscription("orders-to-fulfilment", true);
    respond(&mut app, Response::Subscriptions { list: Ok(vec![first.clone()]), dlq_counts: HashMap::new() });
    respond(&mut app, Response::Processors(Ok(vec![processor("audit-log", true)])));
    assert_shows(screen(&app).lines().next().unwrap(), &["5 Processors 1", "6 Subscriptions 1"]);

    // On the Live pane, both lists are loaded again every few seconds.
    let mut polled = Vec::new();
    for second in 1..=5 {
        polled.extend(app.update(Action::Tick(at(-second))));
    }
    assert!(polled.contains(&Effect::Subscriptions) && polled.contains(&Effect::Processors), "{polled:?}");
    respond(&mut app, Response::Subscriptions { list: Ok(vec![first.clone()]), dlq_counts: HashMap::new() });
    respond(&mut app, Response::Processors(Ok(vec![processor("audit-log", true)])));

    // A dead letter of a subscription made since the last load: its name is asked for at once, and
    // meanwhile it shows by the random tail of its id, not the time-ordered head.
    let effects = char(&mut app, '4');
    let [Effect::DeadLetters { request, .. }] = effects.as_slice() else { panic!("a DLQ load expected") };
    respond(&mut app, Response::DeadLetters { request: *request, result: Ok(DlqPage { entries: vec![], total: 0 }) });
    let second = subscription("alerts-pager", true);
    let entry = dead_letter("alert.raised", &second, 5);
    let generation = app.live.generation;
    let effects = app.update(Action::Feed(FeedBatch {
        generation,
        items: vec![FeedItem::DeadLetter { action: DlqAction::Added, entry: Arc::new(entry.clone()) }],
        dropped: 0,
        backfill: false,
    }));
    assert_eq!(effects, [Effect::Subscriptions]);
    let id = second.subscription_id.to_string();
    let tail = &id[id.len() - 8..];
    assert_shows(line_with(&screen(&app), "alert.raised"), &[&format!("subscription …{tail}")]);
    respond(
        &mut app,
        Response::Subscriptions { list: Ok(vec![first.clone(), second.clone()]), dlq_counts: HashMap::new() },
    );
    let text = screen(&app);
    assert_shows(line_with(&text, "alert.raised"), &["alerts-pager"]);
    assert_shows(text.lines().next().unwrap(), &["6 Subscriptions 2"]);

    // The detail and the confirmation name it too.
    let effects = press(&mut app, KeyCode::Enter);
    assert_eq!(effects, [Effect::DeadLetter(entry.dlq_id)]);
    assert_shows(&screen(&app), &["alert.raised · alerts-pager"]);
    press(&mut app, KeyCode::Esc);
    char(&mut app, 'd');
    assert_shows(&screen(&app), &["(alerts-pager)"]);
}

fn group(key: DlqGroupKey, count: u64, histogram: Vec<u64>) -> DlqGroup {
    DlqGroup { key, count, first_failed_at: at(3600), last_failed_at: at(5), histogram }
}

#[test]
fn dlq_groups_toggle_with_g_and_a_group_is_retried_or_discarded_after_confirming_the_count() {
    let (mut app, subscriptions, processors) = loaded_app();
    char(&mut app, '4');
    let effects = char(&mut app, 'g');
    let [Effect::DeadLetterGroups { request, query }] = effects.as_slice() else { panic!("a groups load expected") };
    assert_eq!((query.kind, query.buckets, query.until), (None, 24, now()));
    let delivery = |subscription: &Subscription, status| DlqGroupKey {
        kind: DeadLetterKind::Delivery,
        subscription_id: Some(subscription.subscription_id),
        processor_id: None,
        last_status_code: Some(status),
        error_class: None,
    };
    let mut rising = vec![0; 24];
    rising[20..].copy_from_slice(&[100, 800, 1000, 2000]);
    let pager = delivery(&subscriptions[1], 503);
    let orders = delivery(&subscriptions[0], 500);
    let checker = DlqGroupKey {
        kind: DeadLetterKind::Processing,
        subscription_id: None,
        processor_id: Some(processors[0].processor_id),
        last_status_code: None,
        error_class: Some("checker".into()),
    };
    let answer = DlqGroups {
        groups: vec![
            group(pager.clone(), 3900, rising),
            group(orders.clone(), 100, vec![4; 24]),
            group(checker, 2, vec![0; 24]),
        ],
        total: 4002,
        since: Some(at(3600)),
        until: now(),
        bucket_s: 150,
    };
    respond(&mut app, Response::DeadLetterGroups { request: *request, result: Ok(answer) });
    let text = screen(&app);
    assert_shows(&text, &["DLQ · 3 groups · 4,002 entries · failures since 2026-03-10 11:00:00 (150s per bar)"]);
    assert_shows(&text, &["Count", "Kind", "Target", "Cause", "Failures over time"]);
    let row = line_with(&text, "3,900");
    assert_shows(row, &["delivery", "alerts-pager", "HTTP 503", "11:00:00", "5s", "····▁▄▄█"]);
    assert_shows(line_with(&text, "100 "), &["orders-to-fulfilment", "HTTP 500", "████████"]);
    assert_shows(line_with(&text, "checker"), &["processing", "audit-log"]);

    // R on the first group asks with its count, and y retries the group as a whole.
    char(&mut app, 'R');
    assert_shows(&screen(&app), &["Retry 3,900 dead letters", "3,900 × delivery alerts-pager · HTTP 503"]);
    let effects = char(&mut app, 'y');
    assert_eq!(effects, [Effect::RetryDeadLetters(DlqSelector::Group(pager))]);
    let effects = respond(&mut app, Response::Retried(Ok(3900)));
    assert!(matches!(effects.as_slice(), [Effect::DeadLetterGroups { .. }]), "the groups are loaded again");

    // d on the second asks; n keeps it; d then Enter discards the group.
    press(&mut app, KeyCode::Down);
    char(&mut app, 'd');
    assert_shows(
        &screen(&app),
        &["Discard 100 dead letters", "orders-to-fulfilment · HTTP 500", "events themselves stay"],
    );
    assert!(char(&mut app, 'n').is_empty());
    char(&mut app, 'd');
    let effects = press(&mut app, KeyCode::Enter);
    assert_eq!(effects, [Effect::DiscardDeadLetters(DlqSelector::Group(orders))]);
    let effects = respond(&mut app, Response::DiscardedMany(Ok(100)));
    assert_shows(screen(&app).lines().last().unwrap(), &["100 dead letters discarded"]);
    let [Effect::DeadLetterGroups { request, .. }] = effects.as_slice() else { panic!("a groups load expected") };
    let empty = DlqGroups { groups: vec![], total: 0, since: None, until: now(), bucket_s: 1 };
    respond(&mut app, Response::DeadLetterGroups { request: *request, result: Ok(empty) });
    assert_shows(&screen(&app), &["DLQ · 0 groups · 0 entries", "The dead-letter queue is empty"]);

    // The feed's changes reload the groups on the next tick, not on every batch.
    let entry = dead_letter("order.paid", &subscriptions[0], 1);
    feed(&mut app, vec![FeedItem::DeadLetter { action: DlqAction::Added, entry: Arc::new(entry) }]);
    let effects = app.update(Action::Tick(at(-1)));
    assert!(effects.iter().any(|e| matches!(e, Effect::DeadLetterGroups { .. })), "{effects:?}");

    // g goes back to the entries.
    let effects = char(&mut app, 'g');
    assert!(matches!(effects.as_slice(), [Effect::DeadLetters { .. }]));
    assert_shows(&screen(&app), &["DLQ · "]);
}

fn command_input(app: &App) -> String {
    match &app.popup {
        Some(Popup::Command(line)) => line.input.clone(),
        other => panic!("the command line is not open: {other:?}"),
    }
}

#[test]
fn the_command_line_completes_runs_recalls_and_suggests_the_closest_command() {
    let (mut app, _, _) = loaded_app();
    assert!(char(&mut app, ':').is_empty());
    type_text(&mut app, "hi");
    press(&mut app, KeyCode::Tab);
    assert_eq!(command_input(&app), "history ");
    assert_shows(&screen(&app), &[":history [type=P]", "[since=T]"]);
    type_text(&mut app, "ty");
    press(&mut app, KeyCode::Tab);
    assert_eq!(command_input(&app), "history type=");
    // Event types come from the statistics; Tab again takes the next one.
    press(&mut app, KeyCode::Tab);
    assert_eq!(command_input(&app), "history type=order.created ");
    press(&mut app, KeyCode::Tab);
    assert_eq!(command_input(&app), "history type=order.paid ");
    assert_shows(line_with(&screen(&app), "type=order.created"), &["type=order.paid", "type=user.login"]);
    type_text(&mut app, "since=1h");
    let effects = press(&mut app, KeyCode::Enter);
    let [Effect::Query { query, .. }] = effects.as_slice() else { panic!("a history query expected: {effects:?}") };
    assert_eq!(query.filter.event_type.as_ref().map(|p| p.as_str()), Some("order.paid"));
    assert_eq!(query.filter.start_time, Some(at(3600)));
    assert!(app.popup.is_none());
    assert_shows(&screen(&app), &["filter type=order.paid  from=1h"]);

    // ↑ brings the last command back, ↓ returns to the (empty) line being typed.
    char(&mut app, ':');
    press(&mut app, KeyCode::Up);
    assert_eq!(command_input(&app), "history type=order.paid since=1h");
    press(&mut app, KeyCode::Down);
    assert_eq!(command_input(&app), "");

    // An unknown command answers with the closest one and the line stays open.
    type_text(&mut app, "dql");
    assert!(press(&mut app, KeyCode::Enter).is_empty());
    assert_shows(&screen(&app), &["unknown command `:dql`; did you mean `:dlq`?"]);
    app.handle_key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
    type_text(&mut app, "history colour=red");
    press(&mut app, KeyCode::Enter);
    assert_shows(&screen(&app), &["unknown key `colour`; keys: type, source"]);
    app.handle_key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
    type_text(&mut app, "dlq groups");
    let effects = press(&mut app, KeyCode::Enter);
    assert!(matches!(effects.as_slice(), [Effect::DeadLetterGroups { .. }]), "{effects:?}");
    assert_eq!(app.pane, eventdeck::tui::panes::Pane::Dlq);

    // :replay runs the dry run of its filter, aimed at the subscription named by to= (completed).
    char(&mut app, ':');
    type_text(&mut app, "replay type=order.* since=2h to=al");
    press(&mut app, KeyCode::Tab);
    assert_eq!(command_input(&app), "replay type=order.* since=2h to=alerts-pager ");
    let effects = press(&mut app, KeyCode::Enter);
    assert!(effects.iter().any(|e| matches!(e, Effect::PrepareReplay(_))), "{effects:?}");
    let Some(Popup::Replay(dialog)) = &app.popup else { panic!("the replay dialog is open") };
    assert_eq!(dialog.targets[dialog.target].label, "subscription alerts-pager");
    press(&mut app, KeyCode::Esc);

    // Esc closes the line without running it; :q quits.
    char(&mut app, ':');
    type_text(&mut app, "q");
    press(&mut app, KeyCode::Esc);
    assert!(app.popup.is_none() && !app.quit);
    char(&mut app, ':');
    type_text(&mut app, "q");
    press(&mut app, KeyCode::Enter);
    assert!(app.quit);
}

#[tokio::test]
async fn export_writes_the_history_filter_as_json_lines() {
    let server = TestServer::start().await;
    let service: Arc<dyn EventService> = Arc::new(server.engine.clone());
    let events: Vec<NewEvent> =
        (0..5).map(|i| NewEvent::new(if i % 2 == 0 { "order.created" } else { "user.login" })).collect();
    service.ingest(events).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders.jsonl").to_string_lossy().into_owned();
    let filter =
        EventFilter { event_type: Some(TypePattern::parse("t", "order.*").unwrap()), ..EventFilter::default() };
    let action = effects::call(service.clone(), Effect::Export { filter, path: path.clone() }).await;
    let Action::Response(response) = action else { panic!("a response expected") };
    let Response::Export { written, total, done, error, .. } = *response else { panic!("an export report expected") };
    assert_eq!((written, total, done, error), (3, 3, true, None));
    let text = std::fs::read_to_string(&path).unwrap();
    let types: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["event_type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(types, ["order.created"; 3]);
    let bad = effects::call(
        service.clone(),
        Effect::Export { filter: EventFilter::default(), path: "/nonexistent/dir/x.jsonl".into() },
    )
    .await;
    let Action::Response(response) = bad else { panic!("a response expected") };
    let Response::Export { done, error, .. } = *response else { panic!("an export report expected") };
    assert!(done && error.unwrap().contains("cannot create the file"));
    server.stop().await;
}

fn stream_event(version: i64, event_type: &str, seconds_ago: i64) -> Arc<Event> {
    let mut e = event(version, event_type, EventSource::Backend, EventStatus::Processed);
    e.stream_id = Some("order:7".into());
    e.stream_version = Some(version);
    e.timestamp = at(seconds_ago);
    Arc::new(e)
}

fn projection(version: i64, state: serde_json::Value) -> Projection {
    Projection {
        entity_type: "order".into(),
        entity_id: "7".into(),
        state,
        version,
        last_event_id: EventId::new_v7(),
        updated_at: now(),
    }
}

#[test]
fn streams_pane_lists_by_prefix_and_steps_through_versions_showing_what_changed() {
    let (mut app, _, _) = loaded_app();
    let effects = char(&mut app, '7');
    let [Effect::Streams { prefix, limit, .. }] = effects.as_slice() else { panic!("a listing expected: {effects:?}") };
    assert_eq!((prefix.as_str(), *limit), ("", 500));
    // `/` asks for the prefix.
    char(&mut app, '/');
    type_text(&mut app, "order:");
    press(&mut app, KeyCode::Tab);
    assert_shows(&screen(&app), &["Streams whose id starts with", "> order:"]);
    let effects = press(&mut app, KeyCode::Enter);
    let [Effect::Streams { request, prefix, .. }] = effects.as_slice() else { panic!("a listing expected") };
    assert_eq!(prefix, "order:");
    let summary = |id: &str, version, event_type: &str| StreamSummary {
        stream_id: id.into(),
        version,
        last_event_at: at(10),
        last_event_type: event_type.into(),
    };
    let list = vec![summary("order:7", 3, "order.shipped"), summary("order:8", 1, "order.created")];
    respond(&mut app, Response::Streams { request: *request, result: Ok(list) });
    let text = screen(&app);
    assert_shows(&text, &["Streams · id starts with order: · 2 shown", "Stream", "Version", "Last event"]);
    assert_shows(line_with(&text, "order:7"), &["3", "order.shipped", "2026-03-10 11:59:50", "10s"]);

    // Enter opens the stream at its last version: the events around it and the state there.
    let effects = press(&mut app, KeyCode::Enter);
    let [
        Effect::StreamEvents { request: events, stream_id, from_version, limit },
        Effect::StreamState { request: state, entity_type, entity_id, version },
    ] = effects.as_slice()
    else {
        panic!("events and state expected: {effects:?}")
    };
    assert_eq!((stream_id.as_str(), *from_version, *limit), ("order:7", 1, 1000));
    assert_eq!((entity_type.as_str(), entity_id.as_str(), *version), ("order", "7", 3));
    let page = StreamEvents {
        stream_id: "order:7".into(),
        version: 3,
        events: vec![
            stream_event(1, "order.created", 300),
            stream_event(2, "order.paid", 200),
            stream_event(3, "order.shipped", 100),
        ],
    };
    respond(&mut app, Response::StreamEvents { request: *events, result: Ok(page) });
    let shipped = json!({"status": "shipped", "total": 10, "paid": true});
    let paid = json!({"status": "paid", "total": 10, "paid": true});
    let before = Some(Ok(projection(2, paid.clone())));
    respond(&mut app, Response::StreamState { request: *state, state: Ok(projection(3, shipped)), before });
    let text = screen(&app);
    assert_shows(
        &text,
        &[
            "Streams · order:7 · version 3 of 3",
            "State at version 3 · order.shipped",
            "changed from version 2: ~status",
        ],
    );
    assert_shows(line_with(&text, "\"status\": \"shipped\""), &["~"]);
    assert!(!line_with(&text, "\"total\": 10").contains('~'), "unchanged fields are not marked");

    // ← steps back a version: the events are loaded already, only the state is asked.
    let effects = press(&mut app, KeyCode::Left);
    let [Effect::StreamState { request: state, version: 2, .. }] = effects.as_slice() else { panic!("{effects:?}") };
    let created = json!({"status": "new", "total": 10});
    let before = Some(Ok(projection(1, created)));
    respond(&mut app, Response::StreamState { request: *state, state: Ok(projection(2, paid)), before });
    let text = screen(&app);
    assert_shows(
        &text,
        &["version 2 of 3", "State at version 2 · order.paid", "changed from version 1: +paid ~status"],
    );
    assert_shows(line_with(&text, "\"paid\": true"), &["+"]);
    // → at the last version and → again stays there.
    press(&mut app, KeyCode::Right);
    assert!(press(&mut app, KeyCode::Right).is_empty(), "no version after the last");

    // t asks for a time; a bad one keeps the prompt open with what is accepted.
    char(&mut app, 't');
    type_text(&mut app, "soon");
    assert!(press(&mut app, KeyCode::Enter).is_empty());
    assert_shows(&screen(&app), &["is not a time: use an age like 15m"]);
    app.handle_key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
    type_text(&mut app, "4m");
    let effects = press(&mut app, KeyCode::Enter);
    let [Effect::StreamAt { request, at: when, .. }] = effects.as_slice() else { panic!("{effects:?}") };
    assert_eq!(*when, at(240));
    let effects =
        respond(&mut app, Response::StreamAt { request: *request, at: *when, result: Ok(projection(1, json!({}))) });
    assert!(matches!(effects.as_slice(), [Effect::StreamState { version: 1, .. }]), "{effects:?}");
    assert_shows(screen(&app).lines().last().unwrap(), &["order:7: version 1 was current at 2026-03-10 11:56:00"]);

    // Esc goes back to the list.
    press(&mut app, KeyCode::Esc);
    assert!(app.streams.open.is_none());
    assert_shows(&screen(&app), &["Streams · id starts with order:"]);
    // :streams PREFIX lists from anywhere.
    char(&mut app, '1');
    char(&mut app, ':');
    type_text(&mut app, "streams users:");
    let effects = press(&mut app, KeyCode::Enter);
    assert!(matches!(effects.as_slice(), [Effect::Streams { prefix, .. }] if prefix == "users:"), "{effects:?}");
}

#[test]
fn cluster_pane_shows_instances_with_uptime_heartbeat_and_claims() {
    let mut app = app();
    respond(&mut app, Response::Health(health()));
    let effects = char(&mut app, '8');
    assert_eq!(effects, [Effect::Cluster]);
    assert_shows(&screen(&app), &["loading…"]);
    let instance = |id: &str, started: i64, seen: i64, claims: InstanceClaims| Instance {
        instance_id: id.into(),
        addr: format!("127.0.0.1:{}", 8686 + started % 7),
        version: "0.1.0".into(),
        started_at: at(started),
        last_seen: at(seen),
        claims,
    };
    let cluster = Cluster {
        instances: vec![
            instance("deck-1", 7260, 2, InstanceClaims { deliveries: 3, processing: 1, replays: 0 }),
            instance("deck-2", 90, 14, InstanceClaims { deliveries: 0, processing: 1200, replays: 1 }),
        ],
    };
    respond(&mut app, Response::Cluster(Ok(cluster)));
    let text = screen(&app);
    assert_shows(&text, &["Cluster · 2 instances sharing the store", "Instance", "Uptime", "Heartbeat", "Deliveries"]);
    assert_shows(line_with(&text, "deck-1"), &["●", "0.1.0", "2h 1m", "2s ago", "3"]);
    let other = line_with(&text, "deck-2");
    assert_shows(other, &["1m 30s", "14s ago", "1,200"]);
    assert!(!other.contains('●'), "only this console's instance is marked");
    assert_shows(text.lines().last().unwrap(), &["2 instances"]);
    assert_shows(text.lines().next().unwrap(), &["8 Cluster 2"]);
    let mut polled = Vec::new();
    for second in 1..=2 {
        polled.extend(app.update(Action::Tick(at(-second))));
    }
    assert!(polled.contains(&Effect::Cluster), "{polled:?}");
}

#[test]
fn dlq_filter_cycles_through_subscriptions_and_processors() {
    let (mut app, subscriptions, processors) = loaded_app();
    char(&mut app, '4');
    let effects = char(&mut app, 'f');
    let [Effect::DeadLetters { query, .. }] = effects.as_slice() else { panic!("a DLQ load expected") };
    assert_eq!(query.subscription_id, Some(subscriptions[0].subscription_id));
    char(&mut app, 'f');
    let effects = char(&mut app, 'f');
    let [Effect::DeadLetters { query, .. }] = effects.as_slice() else { panic!("a DLQ load expected") };
    assert_eq!(query.processor_id, Some(processors[0].processor_id));
    assert_shows(&screen(&app), &["processor audit-log"]);
    let effects = char(&mut app, 'F');
    let [Effect::DeadLetters { query, .. }] = effects.as_slice() else { panic!("a DLQ load expected") };
    assert_eq!(query.subscription_id, Some(subscriptions[1].subscription_id));
}

#[test]
fn processors_pane_lists_and_toggles() {
    let (mut app, _, processors) = loaded_app();
    assert_eq!(char(&mut app, '5'), [Effect::Processors], "showing the pane refreshes it");
    assert!(char(&mut app, 'g').is_empty(), "a load in flight is not asked for twice");
    let text = screen(&app);
    assert_shows(&text, &["5 Processors 2", "Processors · 2 (1 on)", "Priority", "Filters", "Processed", "Avg ms"]);
    assert_shows(line_with(&text, "audit-log"), &["log", "on", "5", "type=order.*", "1,234", "2", "1.50"]);
    assert_shows(line_with(&text, "enrich"), &["off"]);

    let effects = char(&mut app, 't');
    assert_eq!(effects, [Effect::ToggleProcessor { id: processors[0].processor_id, enabled: false }]);
    let mut off = (*processors[0]).clone();
    off.enabled = false;
    respond(&mut app, Response::ProcessorToggled(Ok(Arc::new(off))));
    assert_shows(&screen(&app), &["Processors · 2 (0 on)", "processor audit-log is off"]);
    press(&mut app, KeyCode::Down);
    let effects = char(&mut app, ' ');
    assert_eq!(effects, [Effect::ToggleProcessor { id: processors[1].processor_id, enabled: true }]);
    press(&mut app, KeyCode::Enter);
    assert_shows(&screen(&app), &["Processor enrich · log", "\"processor_name\": \"enrich\""]);
}

#[test]
fn subscriptions_pane_toggles_and_deletes_after_confirming() {
    let (mut app, subscriptions, _) = loaded_app();
    char(&mut app, '6');
    let text = screen(&app);
    assert_shows(&text, &["6 Subscriptions 2", "Subscriptions · 2 (1 on)", "URL", "Patterns", "DLQ"]);
    assert_shows(
        line_with(&text, "orders-to-fulfilment"),
        &["http://127.0.0.1:9/orders-to-fulfilment", "order.>", "on", "2"],
    );
    assert_shows(line_with(&text, "alerts-pager"), &["off"]);

    let effects = char(&mut app, 't');
    assert_eq!(effects, [Effect::UpdateSubscription { id: subscriptions[0].subscription_id, enabled: false }]);

    assert!(char(&mut app, 'x').is_empty());
    assert_shows(&screen(&app), &["Delete 1 subscription", "Delete subscription orders-to-fulfilment"]);
    assert!(press(&mut app, KeyCode::Esc).is_empty());
    char(&mut app, 'x');
    let effects = char(&mut app, 'y');
    assert_eq!(effects, [Effect::DeleteSubscription(subscriptions[0].subscription_id)]);
    respond(&mut app, Response::SubscriptionDeleted { id: subscriptions[0].subscription_id, result: Ok(()) });
    app.update(Action::Resize(160, 30));
    assert_shows(&screen(&app), &["Subscriptions · 1 (0 on)", "subscription orders-to-fulfilment deleted"]);

    let effects = press(&mut app, KeyCode::Enter);
    assert_eq!(effects, [Effect::SubscriptionDetail(subscriptions[1].clone())]);
}

#[test]
fn help_lists_the_current_panes_keys_and_the_log_file() {
    let mut app = app();
    char(&mut app, '4');
    char(&mut app, '?');
    app.update(Action::Resize(120, 60));
    let text = screen(&app);
    assert_shows(&text, &["DLQ pane", "retry the selected entry", "mark / unmark", "Everywhere", "quit"]);
    assert_shows(&text, &["Log file: /var/log/eventdeck-console.log"]);
    char(&mut app, '?');
    assert!(app.popup.is_none());
    char(&mut app, '5');
    char(&mut app, '?');
    assert_shows(&screen(&app), &["Processors pane", "turn the selected processor on / off"]);
}

#[test]
fn panes_switch_with_numbers_and_tab_and_q_quits() {
    let mut app = app();
    press(&mut app, KeyCode::Tab);
    assert_shows(&screen(&app), &["History"]);
    app.handle_key(KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT));
    app.handle_key(KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT));
    assert_shows(&screen(&app), &["┌ Cluster "]);
    app.handle_key(KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT));
    app.handle_key(KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT));
    assert_shows(&screen(&app), &["Subscriptions · 0 (0 on)"]);
    char(&mut app, '3');
    assert_shows(&screen(&app), &["Statistics", "loading…"]);
    assert!(!app.quit);
    char(&mut app, 'q');
    assert!(app.quit);
}

#[test]
fn service_errors_show_in_the_status_bar_and_attached_mode_says_reconnecting() {
    let mut app = app_with(OriginMode::Attached);
    respond(&mut app, Response::Statistics(Err(eventdeck::service::Error::Unavailable("connection refused".into()))));
    let status = screen(&app).lines().last().unwrap().to_owned();
    assert_shows(&status, &["ATTACHED", "reconnecting (0s): storage is unavailable: connection refused"]);
    app.update(Action::Tick(at(-5)));
    respond(&mut app, Response::Statistics(Ok(statistics())));
    let status = screen(&app).lines().last().unwrap().to_owned();
    assert!(!status.contains("reconnecting"), "{status}");
    assert_shows(&status, &["connected again"]);

    let mut embedded = app_with(OriginMode::Embedded);
    respond(&mut embedded, Response::Retried(Err(eventdeck::service::Error::ShuttingDown)));
    assert_shows(screen(&embedded).lines().last().unwrap(), &["⚠", "retry: the server is shutting down"]);
}

#[test]
fn the_mouse_wheel_scrolls_and_resizing_redraws() {
    let mut app = app();
    feed(&mut app, stored((1..=40).map(|seq| event(seq, "a.b", EventSource::Backend, EventStatus::Pending))));
    app.update(Action::Scroll(-3));
    assert_eq!(app.live.selected, Some(38), "three rows up from following the newest (40)");
    app.update(Action::Scroll(6));
    assert_eq!(app.live.selected, None, "scrolling past the newest follows again");
    app.update(Action::Resize(80, 12));
    let text = screen(&app);
    assert_eq!(text.lines().count(), 12);
    assert_shows(text.lines().next().unwrap(), &["1 Live 40", "2 Hist", "6 Subs …"]);
    assert_shows(&text, &["user-40"]);
    assert!(!text.contains("user-20 "), "only the newest rows fit:\n{text}");
}

async fn next(rx: &mut tokio::sync::mpsc::Receiver<Action>) -> Action {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("an action within 10 s")
        .expect("open channel")
}

/// The effects against a real engine: the feed task's backfill and live batches, and a query.
#[tokio::test]
async fn effects_run_against_the_embedded_engine() {
    let server = TestServer::start().await;
    let service: Arc<dyn EventService> = Arc::new(server.engine.clone());
    service.ingest(vec![NewEvent::new("order.created")]).await.unwrap();

    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let stop = tokio_util::sync::CancellationToken::new();
    let mut runner = Runner::new(service.clone(), tx, tokio::runtime::Handle::current(), stop.clone());
    runner.run(Effect::StartFeed { generation: 7, filter: EventFilter::default() });
    let mut app = app();
    app.live.generation = 7;
    // The backfill brings the stored event.
    let action = next(&mut rx).await;
    assert!(matches!(&action, Action::Feed(batch) if batch.backfill && batch.items.len() == 1), "{action:?}");
    app.update(action);
    // A new event arrives through the live feed.
    service.ingest(vec![NewEvent::new("order.paid")]).await.unwrap();
    while app.live.events.len() < 2 {
        app.update(next(&mut rx).await);
    }
    assert_eq!(
        app.live.events.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>(),
        ["order.created", "order.paid"]
    );
    stop.cancel();

    // One-shot effects answer with what the service says.
    let answer = effects::call(service.clone(), Effect::Statistics).await;
    let Action::Response(response) = answer else { panic!("a response expected") };
    let Response::Statistics(Ok(stats)) = *response else { panic!("statistics expected") };
    assert_eq!(stats.total_events, 2);
    let request = 9;
    let query = eventdeck::domain::EventQuery::default();
    let Action::Response(response) = effects::call(service.clone(), Effect::Query { request, query }).await else {
        panic!("a response expected")
    };
    app.update(Action::Response(response));
    assert!(!app.history.loaded, "an answer to another request is dropped");
    server.stop().await;
}
