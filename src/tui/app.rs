//! The console's state and its one update function: an [`Action`] in, the state changed, the
//! [`Effect`]s to run out. No awaits and no drawing happen here; `ui::draw` reads `&App`.

use crossterm::event::KeyEvent;

use super::action::{Action, Command, FeedBatch, Response, TextEdit};
use super::effects::Effect;
use super::keymap::{self, Mode};
use super::panes::Pane;
use super::panes::cluster::ClusterState;
use super::panes::dlq::{DlqState, DlqView};
use super::panes::history::HistoryState;
use super::panes::live::LiveState;
use super::panes::processors::ProcessorsState;
use super::panes::statistics::StatsState;
use super::panes::streams::StreamsState;
use super::panes::subscriptions::SubscriptionsState;
use super::popups::command::{self, LineOutcome, Run, Vocabulary};
use super::popups::filter::{FilterTarget, FormOutcome};
use super::popups::replay::ReplayStage;
use super::popups::{
    CommandLine, Confirm, Detail, DetailBody, DetailKey, HelpState, PendingOp, Popup, PromptFor, ReplayDialog, detail,
};
use super::{Origin, OriginMode, Settings};
use crate::domain::{ReplayProgress, ReplayStatus, Timestamp};
use crate::remote::ConnectionState;
use crate::service::{FeedItem, Health};

/// How long a status-bar message stays, in seconds.
const MESSAGE_SECS: i64 = 10;
/// Subscriptions and processors are loaded again this often (seconds) whichever pane is open.
const TARGETS_SECS: u64 = 5;

/// Whether the service answers, as far as the console can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    Connecting,
    Connected,
    /// Calls fail (attached mode: the server is unreachable); the console keeps retrying.
    Reconnecting {
        since: Timestamp,
        error: String,
    },
}

/// What the status bar shows besides the origin.
#[derive(Debug, Clone)]
pub struct StatusState {
    pub health: Option<Health>,
    /// How many instances share the store, when known.
    pub instances: Option<usize>,
    pub connection: Connection,
    pub last_error: Option<(String, Timestamp)>,
    /// A passing message (what an action did), shown for a few seconds.
    pub message: Option<(String, Timestamp)>,
    /// The origin's own status line (the demo's counters), as of the last tick.
    pub extra: Option<String>,
}

/// How an `:export` goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportState {
    pub path: String,
    pub written: u64,
    pub total: u64,
    pub done: bool,
    pub error: Option<String>,
}

/// Periodic calls in flight, so a slow service never piles up requests.
#[derive(Debug, Clone, Copy, Default)]
pub struct Polls {
    pub statistics: bool,
    pub health: bool,
    pub processors: bool,
    pub subscriptions: bool,
    pub replay: bool,
}

#[derive(Debug)]
pub struct App {
    pub origin: Origin,
    /// The time the console last looked at the clock (ages are measured from it).
    pub now: Timestamp,
    /// Columns, rows.
    pub size: (u16, u16),
    pub pane: Pane,
    pub popup: Option<Popup>,
    pub live: LiveState,
    pub history: HistoryState,
    pub stats: StatsState,
    pub dlq: DlqState,
    pub processors: ProcessorsState,
    pub subscriptions: SubscriptionsState,
    pub streams: StreamsState,
    pub cluster: ClusterState,
    pub status: StatusState,
    /// A replay whose dialog was closed while it ran; the status bar follows it.
    pub background_replay: Option<ReplayDialog>,
    /// Something changed since the last frame.
    pub dirty: bool,
    pub quit: bool,
    pub polls: Polls,
    /// Command lines run, newest first (at most [`command::HISTORY_LIMIT`]).
    pub command_history: Vec<String>,
    /// The running or last export of `:export`.
    pub export: Option<ExportState>,
    ticks: u64,
    next_request: u64,
}

impl App {
    /// A console at `now`, and the effects that load what it shows first.
    pub fn new(origin: Origin, settings: Settings, now: Timestamp) -> (Self, Vec<Effect>) {
        let mut app = Self {
            origin,
            now,
            size: (120, 40),
            pane: Pane::Live,
            popup: None,
            live: LiveState::new(settings.live_capacity),
            history: HistoryState::default(),
            stats: StatsState::default(),
            dlq: DlqState::default(),
            processors: ProcessorsState::default(),
            subscriptions: SubscriptionsState::default(),
            streams: StreamsState::default(),
            cluster: ClusterState::default(),
            status: StatusState {
                health: None,
                instances: None,
                connection: Connection::Connecting,
                last_error: None,
                message: None,
                extra: None,
            },
            background_replay: None,
            dirty: true,
            quit: false,
            polls: Polls { statistics: true, health: true, processors: true, subscriptions: true, replay: false },
            command_history: Vec::new(),
            export: None,
            ticks: 0,
            next_request: 0,
        };
        if let Some(notice) = app.origin.notice.clone() {
            app.status.message = Some((notice, now));
        }
        if let Some(error) = app.origin.api_error.clone() {
            app.status.last_error = Some((error, now));
        }
        let effects = vec![
            app.live.start_feed(),
            Effect::Statistics,
            Effect::Health,
            Effect::Cluster,
            Effect::Processors,
            Effect::Subscriptions,
        ];
        (app, effects)
    }

    /// What the keyboard talks to now.
    pub fn mode(&self) -> Mode {
        match &self.popup {
            None => Mode::Pane(self.pane),
            Some(Popup::Help(_)) => Mode::Help,
            Some(Popup::Filter(_)) => Mode::Form,
            Some(Popup::Confirm(_)) => Mode::Confirm,
            Some(Popup::Detail(_)) => Mode::Detail,
            Some(Popup::Replay(_)) => Mode::Replay,
            Some(Popup::Command(_) | Popup::Prompt(_)) => Mode::CommandLine,
        }
    }

    /// A key press through the keymap into [`App::update`].
    pub fn handle_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        match keymap::action_for_key(self.mode(), key) {
            Some(action) => self.update(action),
            None => Vec::new(),
        }
    }

    pub fn update(&mut self, action: Action) -> Vec<Effect> {
        self.dirty = true;
        match action {
            Action::Command(command) => self.command(command),
            Action::Text(edit) => self.text(edit),
            Action::Scroll(rows) => self.scroll(rows),
            Action::Tick(now) => self.tick(now),
            Action::Resize(columns, rows) => {
                self.size = (columns, rows);
                Vec::new()
            }
            Action::Feed(batch) => self.feed(batch),
            Action::Response(response) => self.respond(*response),
        }
    }

    /// Rows a pane's table body has on the current screen (tab bar, status bar, border and header
    /// taken off).
    pub fn list_rows(&self) -> usize {
        usize::from(self.size.1.saturating_sub(6)).max(1)
    }

    pub(crate) fn request_id(&mut self) -> u64 {
        self.next_request += 1;
        self.next_request
    }

    pub(crate) fn error(&mut self, context: &str, error: impl std::fmt::Display) {
        let text = format!("{context}: {error}");
        tracing::warn!(error = %text, "console: a service call failed");
        self.status.last_error = Some((text, self.now));
    }

    pub(crate) fn notify(&mut self, message: impl Into<String>) {
        self.status.message = Some((message.into(), self.now));
    }

    fn command(&mut self, command: Command) -> Vec<Effect> {
        if command == Command::Quit {
            self.quit = true;
            return Vec::new();
        }
        if let Some(popup) = self.popup.take() {
            return self.popup_command(popup, command);
        }
        match command {
            Command::Help => {
                self.popup = Some(Popup::Help(HelpState::default()));
                Vec::new()
            }
            Command::CommandLine => {
                self.popup = Some(Popup::Command(CommandLine::default()));
                Vec::new()
            }
            Command::ShowPane(n) => Pane::from_number(n).map(|pane| self.show(pane)).unwrap_or_default(),
            Command::NextPane => self.show(self.pane.next()),
            Command::PrevPane => self.show(self.pane.prev()),
            Command::Close if self.pane != Pane::Streams => Vec::new(),
            _ => match self.pane {
                Pane::Live => self.live_command(command),
                Pane::History => self.history_command(command),
                Pane::Statistics => self.statistics_command(command),
                Pane::Dlq => self.dlq_command(command),
                Pane::Processors => self.processors_command(command),
                Pane::Subscriptions => self.subscriptions_command(command),
                Pane::Streams => self.streams_command(command),
                Pane::Cluster => self.cluster_command(command),
            },
        }
    }

    /// Switches pane and loads what it shows when that is missing or old.
    fn show(&mut self, pane: Pane) -> Vec<Effect> {
        self.pane = pane;
        match pane {
            Pane::History if !self.history.loaded && !self.history.loading => self.history_query(),
            Pane::Dlq => self.dlq_reload(),
            Pane::Processors => self.poll_processors(),
            Pane::Subscriptions => self.poll_subscriptions(),
            Pane::Streams if !self.streams.loaded && !self.streams.loading => self.streams_reload(),
            Pane::Cluster => vec![Effect::Cluster],
            _ => Vec::new(),
        }
    }

    pub(crate) fn poll_processors(&mut self) -> Vec<Effect> {
        if self.polls.processors {
            return Vec::new();
        }
        self.polls.processors = true;
        vec![Effect::Processors]
    }

    pub(crate) fn poll_subscriptions(&mut self) -> Vec<Effect> {
        if self.polls.subscriptions {
            return Vec::new();
        }
        self.polls.subscriptions = true;
        vec![Effect::Subscriptions]
    }

    fn detail_rows(&self) -> usize {
        detail::rows(ratatui::layout::Rect::new(0, 0, self.size.0, self.size.1))
    }

    fn popup_command(&mut self, popup: Popup, command: Command) -> Vec<Effect> {
        match popup {
            Popup::Help(mut help) => {
                match command {
                    Command::Close | Command::Help => return Vec::new(),
                    Command::Up => help.scroll = help.scroll.saturating_sub(1),
                    Command::Down => help.scroll = help.scroll.saturating_add(1).min(200),
                    _ => {}
                }
                self.popup = Some(Popup::Help(help));
            }
            Popup::Confirm(confirm) => match command {
                Command::Confirm => return self.confirmed(confirm),
                Command::Close => {}
                _ => self.popup = Some(Popup::Confirm(confirm)),
            },
            Popup::Detail(mut view) => {
                let rows = self.detail_rows();
                let page = rows as isize;
                match command {
                    Command::Close => return Vec::new(),
                    Command::Help => {
                        self.popup = Some(Popup::Help(HelpState::default()));
                        return Vec::new();
                    }
                    Command::Up => view.scroll_by(-1, rows),
                    Command::Down => view.scroll_by(1, rows),
                    Command::PageUp => view.scroll_by(-page, rows),
                    Command::PageDown => view.scroll_by(page, rows),
                    Command::Top => view.scroll = 0,
                    Command::Bottom => view.scroll_by(isize::MAX / 2, rows),
                    _ => {}
                }
                self.popup = Some(Popup::Detail(view));
            }
            Popup::Replay(dialog) => return self.replay_command(dialog, command),
            Popup::Filter(form) => self.popup = Some(Popup::Filter(form)),
            Popup::Command(line) => {
                if command != Command::Close {
                    self.popup = Some(Popup::Command(line));
                }
            }
            Popup::Prompt(prompt) => {
                if command != Command::Close {
                    self.popup = Some(Popup::Prompt(prompt));
                }
            }
        }
        Vec::new()
    }

    fn confirmed(&mut self, confirm: Confirm) -> Vec<Effect> {
        match confirm.op {
            PendingOp::RetryDeadLetters { selector, count } => {
                self.notify(format!("retrying {count} dead letter{}…", if count == 1 { "" } else { "s" }));
                vec![Effect::RetryDeadLetters(selector)]
            }
            PendingOp::DiscardDeadLetter(id) => vec![Effect::DiscardDeadLetter(id)],
            PendingOp::DiscardDeadLetters { selector, count } => {
                self.notify(format!(
                    "discarding {} dead letter{}…",
                    super::widgets::format::count(count),
                    if count == 1 { "" } else { "s" }
                ));
                vec![Effect::DiscardDeadLetters(selector)]
            }
            PendingOp::DeleteSubscription(id) => vec![Effect::DeleteSubscription(id)],
            PendingOp::Archive { before, count } => {
                self.notify(format!("archiving {} events before {before}…", super::widgets::format::count(count)));
                vec![Effect::Archive(before)]
            }
        }
    }

    fn replay_command(&mut self, mut dialog: ReplayDialog, command: Command) -> Vec<Effect> {
        match command {
            Command::Close => {
                if matches!(dialog.stage, ReplayStage::Starting { .. } | ReplayStage::Running { .. }) {
                    self.notify("the replay goes on; the status bar shows its progress");
                    self.background_replay = Some(dialog);
                }
                return Vec::new();
            }
            Command::Confirm => match &dialog.stage {
                ReplayStage::Ready { request, count, .. } if *count > 0 => {
                    let mut request = request.clone();
                    request.dry_run = false;
                    request.confirm = true;
                    request.target = dialog.chosen_target();
                    dialog.stage = ReplayStage::Starting { count: *count };
                    self.popup = Some(Popup::Replay(dialog));
                    return vec![Effect::StartReplay(request)];
                }
                ReplayStage::Ready { .. } | ReplayStage::Finished(_) | ReplayStage::Failed(_) => return Vec::new(),
                _ => {}
            },
            Command::NextChoice | Command::PrevChoice
                if matches!(dialog.stage, ReplayStage::Counting | ReplayStage::Ready { .. }) =>
            {
                let n = dialog.targets.len().max(1);
                dialog.target = match command {
                    Command::NextChoice => (dialog.target + 1) % n,
                    _ => (dialog.target + n - 1) % n,
                };
            }
            _ => {}
        }
        self.popup = Some(Popup::Replay(dialog));
        Vec::new()
    }

    fn text(&mut self, edit: TextEdit) -> Vec<Effect> {
        if let Some(Popup::Command(_)) = &self.popup {
            let Some(Popup::Command(mut line)) = self.popup.take() else { return Vec::new() };
            let vocabulary = self.vocabulary();
            match line.edit(edit, &self.command_history, &vocabulary) {
                LineOutcome::Editing => {}
                LineOutcome::Cancel => return Vec::new(),
                LineOutcome::Submit => {
                    let text = line.input.trim().trim_start_matches(':').trim().to_owned();
                    if text.is_empty() {
                        return Vec::new();
                    }
                    self.command_history.retain(|l| *l != text);
                    self.command_history.insert(0, text.clone());
                    self.command_history.truncate(command::HISTORY_LIMIT);
                    match command::parse(&text, self.now) {
                        Ok(run) => return self.run_command(run),
                        Err(error) => line.error = Some(error),
                    }
                }
            }
            self.popup = Some(Popup::Command(line));
            return Vec::new();
        }
        if let Some(Popup::Prompt(_)) = &self.popup {
            let Some(Popup::Prompt(mut prompt)) = self.popup.take() else { return Vec::new() };
            // A prompt has no completion and no history: Tab and ↑/↓ do nothing there.
            let edit = match edit {
                TextEdit::Complete
                | TextEdit::Earlier
                | TextEdit::Later
                | TextEdit::NextField
                | TextEdit::PrevField => {
                    self.popup = Some(Popup::Prompt(prompt));
                    return Vec::new();
                }
                edit => edit,
            };
            match prompt.line.edit(edit, &[], &Vocabulary::default()) {
                LineOutcome::Editing => {}
                LineOutcome::Cancel => return Vec::new(),
                LineOutcome::Submit => {
                    let text = prompt.line.input.trim().to_owned();
                    match prompt.purpose {
                        PromptFor::StreamPrefix => return self.streams_search(text),
                        PromptFor::StreamTime => match self.stream_jump_to(&text) {
                            Ok(effects) => return effects,
                            Err(error) => prompt.line.error = Some(error),
                        },
                    }
                }
            }
            self.popup = Some(Popup::Prompt(prompt));
            return Vec::new();
        }
        let Some(Popup::Filter(mut form)) = self.popup.take() else { return Vec::new() };
        match form.edit(edit) {
            FormOutcome::Editing => {}
            FormOutcome::Cancel => return Vec::new(),
            FormOutcome::Submit => {
                let values = form.values();
                match values.parse(self.now) {
                    Ok(filter) => {
                        let values = values.canonical(&filter);
                        return match form.target {
                            FilterTarget::Live => self.apply_live_filter(values, filter),
                            FilterTarget::History => self.apply_history_filter(values, filter),
                        };
                    }
                    Err(error) => form.error = Some(error),
                }
            }
        }
        self.popup = Some(Popup::Filter(form));
        Vec::new()
    }

    /// Names the command line completes values from.
    fn vocabulary(&self) -> Vocabulary {
        let mut targets: Vec<String> = self.subscriptions.items.iter().map(|s| s.subscriber_name.clone()).collect();
        targets.extend(self.processors.items.iter().map(|p| p.processor_name.clone()));
        let event_types =
            self.stats.latest.as_ref().map(|s| s.events_by_type.keys().cloned().collect()).unwrap_or_default();
        Vocabulary { targets, event_types }
    }

    /// Does what a parsed command line asks.
    fn run_command(&mut self, run: Run) -> Vec<Effect> {
        match run {
            Run::Pane(pane) => self.show(pane),
            Run::Help => {
                self.popup = Some(Popup::Help(HelpState::default()));
                Vec::new()
            }
            Run::Quit => {
                self.quit = true;
                Vec::new()
            }
            Run::History(values) => {
                self.pane = Pane::History;
                match values.parse(self.now) {
                    Ok(filter) => {
                        let values = values.canonical(&filter);
                        self.apply_history_filter(values, filter)
                    }
                    Err(error) => {
                        self.error("history", error);
                        Vec::new()
                    }
                }
            }
            Run::Dlq { groups } => {
                if let Some(groups) = groups {
                    self.dlq.view = if groups { DlqView::Groups } else { DlqView::Entries };
                }
                self.show(Pane::Dlq)
            }
            Run::Replay { values, target } => {
                let filter = match values.parse(self.now) {
                    Ok(filter) => filter,
                    Err(error) => {
                        self.error("replay", error);
                        return Vec::new();
                    }
                };
                let mut effects = Vec::new();
                if self.pane != Pane::History || self.history.values != values {
                    self.pane = Pane::History;
                    effects.extend(self.apply_history_filter(values.canonical(&filter), filter));
                }
                effects.extend(self.open_replay());
                if let (Some(name), Some(Popup::Replay(dialog))) = (target, &mut self.popup) {
                    match dialog
                        .targets
                        .iter()
                        .position(|t| t.target.is_some() && t.label.ends_with(&format!(" {name}")))
                    {
                        Some(i) => dialog.target = i,
                        None => {
                            self.popup = None;
                            let names = self.vocabulary().targets.join(", ");
                            self.error(
                                "replay",
                                format!("no subscription or processor is named `{name}`; known: {names}"),
                            );
                            return Vec::new();
                        }
                    }
                }
                effects
            }
            Run::RetryGroup | Run::DiscardGroup => {
                if self.pane != Pane::Dlq || self.dlq.view != DlqView::Groups || self.dlq.groups.groups().is_empty() {
                    self.notify("select a group first: :dlq groups, then ↑/↓");
                    self.dlq.view = DlqView::Groups;
                    return self.show(Pane::Dlq);
                }
                let command = if run == Run::RetryGroup { Command::Retry } else { Command::Discard };
                self.dlq_command(command)
            }
            Run::Streams { prefix } => self.streams_search(prefix),
            Run::ExportHistory { path } => {
                if self.export.as_ref().is_some_and(|e| !e.done) {
                    self.notify("an export is still running; wait for it to finish");
                    return Vec::new();
                }
                self.export = Some(ExportState { path: path.clone(), written: 0, total: 0, done: false, error: None });
                self.notify(format!("exporting the History filter ({}) to {path}…", self.history.values.summary()));
                vec![Effect::Export { filter: self.history.filter.clone(), path }]
            }
        }
    }

    fn scroll(&mut self, rows: i16) -> Vec<Effect> {
        let detail_rows = self.detail_rows();
        match &mut self.popup {
            Some(Popup::Detail(view)) => view.scroll_by(isize::from(rows), detail_rows),
            Some(Popup::Help(help)) => help.scroll = help.scroll.saturating_add_signed(rows).min(200),
            Some(_) => {}
            None => {
                let command = if rows < 0 { Command::Up } else { Command::Down };
                let mut effects = Vec::new();
                for _ in 0..rows.unsigned_abs() {
                    effects.extend(self.command(command));
                }
                return effects;
            }
        }
        Vec::new()
    }

    fn tick(&mut self, now: Timestamp) -> Vec<Effect> {
        self.now = now;
        self.ticks += 1;
        self.live.tick();
        if let Some(line) = &self.origin.status_line {
            self.status.extra = Some((line.0)());
        }
        let mut effects = Vec::new();
        if !self.polls.statistics {
            self.polls.statistics = true;
            effects.push(Effect::Statistics);
        }
        if self.ticks.is_multiple_of(5) && !self.polls.health {
            self.polls.health = true;
            effects.push(Effect::Health);
            effects.push(Effect::Cluster);
        }
        // Names show everywhere (DLQ rows, dialogs, tab counts): both lists are kept current whichever
        // pane is open, faster on their own pane.
        if self.ticks.is_multiple_of(TARGETS_SECS) {
            effects.extend(self.learn_targets(true, true));
        }
        match self.pane {
            Pane::Processors if self.ticks.is_multiple_of(2) => effects.extend(self.poll_processors()),
            Pane::Subscriptions if self.ticks.is_multiple_of(3) => effects.extend(self.poll_subscriptions()),
            Pane::Streams if self.streams.open.is_none() && self.ticks.is_multiple_of(5) && !self.streams.loading => {
                effects.extend(self.streams_reload())
            }
            Pane::Cluster if self.ticks.is_multiple_of(2) && !self.ticks.is_multiple_of(5) => {
                effects.push(Effect::Cluster)
            }
            Pane::Dlq if self.dlq.view == DlqView::Groups && self.dlq.groups.stale && !self.dlq.busy() => {
                effects.extend(self.dlq_reload())
            }
            Pane::Dlq if self.ticks.is_multiple_of(5) && !self.dlq.busy() => effects.extend(self.dlq_reload()),
            _ => {}
        }
        let running = self.replay_dialogs().find_map(|d| d.running_id());
        if let Some(id) = running.filter(|_| !self.polls.replay) {
            self.polls.replay = true;
            effects.push(Effect::ReplayProgress(id));
        }
        if self
            .status
            .message
            .as_ref()
            .is_some_and(|(_, at)| now.as_micros() - at.as_micros() > MESSAGE_SECS * 1_000_000)
        {
            self.status.message = None;
        }
        effects
    }

    fn feed(&mut self, batch: FeedBatch) -> Vec<Effect> {
        if batch.generation != self.live.generation {
            self.dirty = false;
            return Vec::new();
        }
        self.live.dropped += batch.dropped;
        let (mut subscriptions, mut processors) = (false, false);
        for item in batch.items {
            match item {
                FeedItem::Stored(event) => self.live.push(event, !batch.backfill),
                FeedItem::Status(change) => self.live.apply_status(&change),
                FeedItem::DeadLetter { action, entry } => {
                    self.dlq.groups.stale = true;
                    let (s, p) = self.unknown_targets([entry.as_ref()]);
                    subscriptions |= s;
                    processors |= p;
                    self.dlq.apply(action, &entry);
                }
                FeedItem::Replay(progress) => self.apply_replay_progress(&progress),
            }
        }
        // A dead letter of a subscription or processor made since the last load: learn its name now.
        self.learn_targets(subscriptions, processors)
    }

    pub(crate) fn replay_dialogs(&mut self) -> impl Iterator<Item = &mut ReplayDialog> {
        let popup = match &mut self.popup {
            Some(Popup::Replay(dialog)) => Some(dialog),
            _ => None,
        };
        popup.into_iter().chain(self.background_replay.as_mut())
    }

    fn apply_replay_progress(&mut self, progress: &ReplayProgress) {
        for dialog in self.replay_dialogs() {
            dialog.apply_progress(progress);
        }
        if let Some(ReplayStage::Finished(done)) = self.background_replay.as_ref().map(|d| &d.stage) {
            let word = if done.status == ReplayStatus::Completed { "completed" } else { "failed" };
            let message = format!("replay {word}: {} done, {} failed", done.done, done.failed);
            self.background_replay = None;
            self.notify(message);
        }
    }

    fn respond(&mut self, response: Response) -> Vec<Effect> {
        match response {
            Response::Connection(state) => match state {
                ConnectionState::Connected => {
                    if let Connection::Reconnecting { .. } = self.status.connection {
                        self.notify("connected again");
                    }
                    self.status.connection = Connection::Connected;
                }
                ConnectionState::Reconnecting { reason } => {
                    if self.status.connection == Connection::Connected {
                        self.status.connection = Connection::Reconnecting { since: self.now, error: reason };
                    } else if let Connection::Reconnecting { error, .. } = &mut self.status.connection {
                        *error = reason;
                    }
                }
            },
            Response::Statistics(result) => {
                self.polls.statistics = false;
                match result {
                    Ok(stats) => {
                        if let Connection::Reconnecting { .. } = self.status.connection {
                            self.notify("connected again");
                        }
                        self.status.connection = Connection::Connected;
                        let dlq_changed = self.stats.latest.as_ref().is_some_and(|s| s.dlq_size != stats.dlq_size);
                        self.stats.push(stats);
                        if dlq_changed && self.pane == Pane::Dlq && !self.dlq.busy() {
                            return self.dlq_reload();
                        }
                    }
                    Err(error) => {
                        self.lost_connection(&error.to_string());
                        self.stats.error = Some(error.to_string());
                        self.error("statistics", error);
                    }
                }
            }
            Response::Health(health) => {
                self.polls.health = false;
                self.status.health = Some(health);
            }
            Response::Cluster(cluster) => self.cluster_loaded(cluster),
            Response::Streams { request, result } => self.streams_loaded(request, result),
            Response::StreamEvents { request, result } => self.stream_events_loaded(request, result),
            Response::StreamState { request, state, before } => self.stream_state_loaded(request, state, before),
            Response::StreamAt { request, at, result } => return self.stream_jumped(request, at, result),
            Response::FeedLost { generation, error } => {
                if generation == self.live.generation {
                    self.live.feed_error = Some(error.to_string());
                    self.lost_connection(&error.to_string());
                    self.error("live feed (resuming)", error);
                }
            }
            Response::FeedRunning { generation } => {
                if generation == self.live.generation {
                    self.live.feed_error = None;
                }
            }
            Response::History { request, result } => return self.history_loaded(request, result),
            Response::EventDetail(detail) => {
                let key = DetailKey::Event(detail.event_id);
                if let Some(view) = self.detail_view(key) {
                    match &detail.event {
                        Ok(_) => view.set_sections(&super::panes::live::detail_sections(&detail)),
                        Err(error) => view.body = DetailBody::Error(format!("cannot load the event: {error}")),
                    }
                }
            }
            Response::DeadLetters { request, result } => return self.dlq_loaded(request, result),
            Response::DeadLetter(result) => match result {
                Ok(entry) => {
                    if let Some(view) = self.detail_view(DetailKey::DeadLetter(entry.dlq_id)) {
                        view.set_json(&entry);
                    }
                }
                Err(error) => {
                    if let Some(Popup::Detail(view)) = &mut self.popup
                        && matches!(view.key, DetailKey::DeadLetter(_))
                    {
                        view.body = DetailBody::Error(format!("cannot load the dead letter: {error}"));
                    }
                    self.error("dead letter", error);
                }
            },
            Response::DeadLetterGroups { request, result } => return self.dlq_groups_loaded(request, result),
            Response::Retried(result) => match result {
                Ok(n) => {
                    self.notify(format!("{n} dead letter{} sent again", if n == 1 { "" } else { "s" }));
                    self.dlq.marked.clear();
                    return self.dlq_reload();
                }
                Err(error) => self.error("retry", error),
            },
            Response::ArchiveCount(result) => return self.archive_counted(result),
            Response::Archived(result) => return self.archived(result),
            Response::DiscardedMany(result) => match result {
                Ok(n) => {
                    self.notify(format!("{n} dead letter{} discarded", if n == 1 { "" } else { "s" }));
                    return self.dlq_reload();
                }
                Err(error) => self.error("discard", error),
            },
            Response::Discarded { id, result } => match result {
                Ok(()) => {
                    self.dlq.remove(id);
                    self.notify("dead letter discarded");
                }
                Err(error) => self.error("discard", error),
            },
            Response::Processors(result) => {
                self.polls.processors = false;
                self.processors_loaded(result);
            }
            Response::ProcessorToggled(result) => self.processor_toggled(result),
            Response::Subscriptions { list, dlq_counts } => {
                self.polls.subscriptions = false;
                self.subscriptions_loaded(list, dlq_counts);
            }
            Response::SubscriptionUpdated(result) => self.subscription_updated(result),
            Response::SubscriptionDeleted { id, result } => self.subscription_deleted(id, result),
            Response::SubscriptionDetail(detail) => {
                let key = DetailKey::Subscription(detail.subscription.subscription_id);
                if let Some(view) = self.detail_view(key) {
                    view.set_sections(&super::panes::subscriptions::detail_sections(&detail));
                }
            }
            Response::ReplayDryRun(result) => {
                if let Some(Popup::Replay(dialog)) = &mut self.popup
                    && dialog.stage == ReplayStage::Counting
                {
                    dialog.stage = match result {
                        Ok((request, started)) => {
                            ReplayStage::Ready { request, count: started.events_count, sample: started.events }
                        }
                        Err(error) => ReplayStage::Failed(error),
                    };
                }
            }
            Response::ReplayStarted(result) => {
                let mut failure = None;
                for dialog in self.replay_dialogs() {
                    let ReplayStage::Starting { count } = dialog.stage else { continue };
                    dialog.stage = match &result {
                        Ok(started) => match started.replay_id {
                            Some(replay_id) => ReplayStage::Running { replay_id, count, progress: None },
                            None => ReplayStage::Failed("the server answered without a replay id".to_owned()),
                        },
                        Err(error) => {
                            failure = Some(error.to_string());
                            ReplayStage::Failed(error.to_string())
                        }
                    };
                }
                if let Some(error) = failure {
                    self.error("replay", error);
                }
            }
            Response::Export { path, written, total, done, error } => {
                if done {
                    match &error {
                        None => {
                            self.notify(format!("exported {} events to {path}", super::widgets::format::count(written)))
                        }
                        Some(error) => self.error("export", format!("{path}: {error}")),
                    }
                }
                self.export = Some(ExportState { path, written, total, done, error });
            }
            Response::ReplayProgress(result) => {
                self.polls.replay = false;
                match result {
                    Ok(progress) => self.apply_replay_progress(&progress),
                    Err(error) => self.error("replay progress", error),
                }
            }
        }
        Vec::new()
    }

    /// The open detail view for `key`, if it is still open.
    fn detail_view(&mut self, key: DetailKey) -> Option<&mut Detail> {
        match &mut self.popup {
            Some(Popup::Detail(view)) if view.key == key => Some(view),
            _ => None,
        }
    }

    /// In attached mode a failing call means the server is out of reach: say "reconnecting".
    fn lost_connection(&mut self, error: &str) {
        if self.origin.mode != OriginMode::Attached {
            return;
        }
        if !matches!(self.status.connection, Connection::Reconnecting { .. }) {
            self.status.connection = Connection::Reconnecting { since: self.now, error: error.to_owned() };
        }
    }
}
