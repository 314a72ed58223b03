//! The terminal console: six panes (Live, History, Statistics, DLQ, Processors, Subscriptions) over
//! an `Arc<dyn EventService>`, the same whether the engine is embedded or a server is attached.
//!
//! Input becomes an [`action::Action`]; [`app::App::update`] changes the state and returns
//! [`effects::Effect`]s, which run on tasks of the main runtime and come back as actions through one
//! bounded channel; [`ui::draw`] reads `&App` at most ~30 times a second, and only when something
//! changed. The loop itself runs on a thread of its own, so a busy engine never delays a key.

pub mod action;
pub mod app;
pub mod effects;
pub mod event;
pub mod keymap;
pub mod panes;
pub mod popups;
pub mod terminal;
pub mod theme;
pub mod ui;
pub mod widgets;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use crossterm::event::EventStream;
use futures::StreamExt;
use tokio::runtime::Handle;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::domain::Timestamp;
use crate::remote::ConnectionState;
use crate::service::EventService;
use action::{Action, Response};
use app::App;
use effects::Runner;

/// Where the service the console shows lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginMode {
    /// The engine runs in this process (`eventdeck`, `eventdeck console`).
    Embedded,
    /// Another eventdeck, over HTTP and SSE (`eventdeck attach URL`).
    Attached,
    /// Embedded, on a throwaway database, with synthetic traffic (`eventdeck demo`).
    Demo,
}

/// What the console is told about where its service lives: everything else it learns through the
/// service itself.
#[derive(Debug, Clone)]
pub struct Origin {
    pub mode: OriginMode,
    /// The HTTP API's base URL: the embedded server's, or the attached one's. `None` when the
    /// embedded API could not start.
    pub api_url: Option<String>,
    /// Why the embedded API is not listening (e.g. the address is taken).
    pub api_error: Option<String>,
    /// The API wants a key (shown in the "how to post" hint).
    pub auth_required: bool,
    /// Where this process writes its log, for the help overlay.
    pub log_file: Option<PathBuf>,
    /// Said in the status bar at start (e.g. what the demo created).
    pub notice: Option<String>,
    /// The attached server's live-stream state, when attached.
    pub connection: Option<watch::Receiver<ConnectionState>>,
    /// A line about what else runs in this process (the demo's traffic), read once a second.
    pub status_line: Option<StatusLine>,
}

/// Makes a one-line summary on demand; must be cheap (it runs on the console's loop).
#[derive(Clone)]
pub struct StatusLine(pub Arc<dyn Fn() -> String + Send + Sync>);

impl std::fmt::Debug for StatusLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StatusLine")
    }
}

impl Origin {
    pub fn new(mode: OriginMode, api_url: Option<String>) -> Self {
        Self {
            mode,
            api_url,
            api_error: None,
            auth_required: false,
            log_file: None,
            notice: None,
            connection: None,
            status_line: None,
        }
    }
}

/// Console settings from `[console]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Events the Live pane keeps (its ring buffer).
    pub live_capacity: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self { live_capacity: 2000 }
    }
}

/// The shortest time between two frames (~30 a second).
const FRAME: Duration = Duration::from_millis(33);
/// Actions waiting for the console loop; effect tasks wait when it is full.
const CHANNEL: usize = 256;
/// Actions applied per wake-up before the loop looks at keys and frames again.
const DRAIN: usize = 64;

/// Runs the console until the user quits (or SIGINT/SIGTERM/SIGHUP). The terminal is restored on return
/// and on panic.
pub async fn run(service: Arc<dyn EventService>, origin: Origin, settings: Settings) -> anyhow::Result<()> {
    let runtime = Handle::current();
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("eventdeck-console".to_owned())
        .spawn(move || {
            let outcome = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the console's runtime")
                .and_then(|console| console.block_on(console_loop(service, origin, settings, runtime)));
            // The caller only goes away when the whole process is ending.
            let _ = done.send(outcome);
        })
        .context("cannot start the console thread")?;
    result.await.unwrap_or_else(|_| Err(anyhow!("the console stopped abnormally; see the log file")))
}

async fn console_loop(
    service: Arc<dyn EventService>,
    origin: Origin,
    settings: Settings,
    runtime: Handle,
) -> anyhow::Result<()> {
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut hangup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    // In raw mode Ctrl-C is a key; a SIGINT still comes from `kill -INT` and must restore the terminal.
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut guard = terminal::enter().context("cannot take over the terminal (the console needs a TTY)")?;
    let (tx, mut rx) = mpsc::channel(CHANNEL);
    let stop = CancellationToken::new();
    let _stop_tasks = stop.clone().drop_guard();
    let mut runner = Runner::new(service, tx.clone(), runtime.clone(), stop.clone());
    if let Some(connection) = origin.connection.clone() {
        runtime.spawn(forward_connection(connection, tx.clone(), stop.clone()));
    }

    let (mut app, effects) = App::new(origin, settings, Timestamp::now());
    let size = guard.terminal.size()?;
    app.update(Action::Resize(size.width, size.height));
    effects.into_iter().for_each(|effect| runner.run(effect));

    let mut input = EventStream::new();
    let mut frame = tokio::time::interval(FRAME);
    frame.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    while !app.quit {
        // Keys first; frames before service answers, so a flood of feed batches never starves either.
        let effects = tokio::select! {
            biased;
            event = input.next() => match event {
                Some(Ok(event)) => match event::action_for(event, app.mode()) {
                    Some(action) => app.update(action),
                    None => Vec::new(),
                },
                Some(Err(error)) => return Err(error).context("cannot read from the terminal"),
                None => break,
            },
            _ = terminate.recv() => break,
            _ = hangup.recv() => break,
            _ = interrupt.recv() => break,
            _ = frame.tick() => {
                if app.dirty {
                    guard.terminal.draw(|f| ui::draw(f, &app)).context("cannot draw on the terminal")?;
                    app.dirty = false;
                }
                Vec::new()
            }
            _ = tick.tick() => app.update(Action::Tick(Timestamp::now())),
            Some(action) = rx.recv() => {
                let mut effects = app.update(action);
                for _ in 0..DRAIN {
                    match rx.try_recv() {
                        Ok(action) => effects.extend(app.update(action)),
                        Err(_) => break,
                    }
                }
                effects
            }
        };
        effects.into_iter().for_each(|effect| runner.run(effect));
    }
    stop.cancel();
    drop(guard);
    Ok(())
}

/// Passes the attached server's connection state on to the console whenever it changes.
async fn forward_connection(
    mut connection: watch::Receiver<ConnectionState>,
    tx: mpsc::Sender<Action>,
    stop: CancellationToken,
) {
    loop {
        let state = connection.borrow_and_update().clone();
        if tx.send(Action::Response(Box::new(Response::Connection(state)))).await.is_err() {
            return;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = connection.changed() => if changed.is_err() { return },
        }
    }
}
