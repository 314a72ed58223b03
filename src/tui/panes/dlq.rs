//! The DLQ pane: dead letters with their kind, event type, target, attempts, last error and age;
//! the detail view with every attempt; retry one, mark and retry many, discard (each confirmed), and
//! a filter by subscription or processor.

use std::collections::BTreeSet;

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState};

use crate::domain::delivery::{DlqGroup, DlqGroupQuery, DlqGroups, DlqQuery, DlqSelector};
use crate::domain::{DeadLetter, DlqId, ProcessorId, SubscriptionId};
use crate::service::{DlqAction, DlqPage, Error};
use crate::tui::action::Command;
use crate::tui::app::App;
use crate::tui::effects::Effect;
use crate::tui::popups::{Confirm, Detail, DetailKey, PendingOp, Popup};
use crate::tui::theme;
use crate::tui::widgets::cursor::ListCursor;
use crate::tui::widgets::format::{age, count, date_time, short_id, truncate};

/// Entries loaded at once (newest first); the title says when the queue holds more.
pub const LOAD_LIMIT: u32 = 500;

/// Whose dead letters are shown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DlqFilter {
    #[default]
    All,
    Subscription(SubscriptionId),
    Processor(ProcessorId),
}

/// What the pane lists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DlqView {
    #[default]
    Entries,
    /// One row per cause, from the store's grouped query.
    Groups,
}

/// The grouped view's state.
#[derive(Debug, Default)]
pub struct GroupsState {
    pub answer: Option<DlqGroups>,
    pub cursor: ListCursor,
    pub loading: bool,
    pub request: u64,
    pub error: Option<String>,
    /// The live feed reported a change since the last load: load again on the next tick.
    pub stale: bool,
}

impl GroupsState {
    pub fn groups(&self) -> &[DlqGroup] {
        self.answer.as_ref().map_or(&[], |a| a.groups.as_slice())
    }

    fn selected(&self) -> Option<&DlqGroup> {
        self.groups().get(self.cursor.selected)
    }
}

#[derive(Debug, Default)]
pub struct DlqState {
    pub view: DlqView,
    pub groups: GroupsState,
    pub entries: Vec<DeadLetter>,
    /// Entries in the queue for the filter (may exceed what is loaded).
    pub total: u64,
    pub cursor: ListCursor,
    pub marked: BTreeSet<DlqId>,
    pub filter: DlqFilter,
    pub loading: bool,
    pub loaded: bool,
    pub request: u64,
    pub error: Option<String>,
}

impl DlqState {
    /// A load of what the current view shows is on its way.
    pub fn busy(&self) -> bool {
        match self.view {
            DlqView::Entries => self.loading,
            DlqView::Groups => self.groups.loading,
        }
    }

    pub fn matches(&self, entry: &DeadLetter) -> bool {
        match self.filter {
            DlqFilter::All => true,
            DlqFilter::Subscription(id) => entry.subscription_id == Some(id),
            DlqFilter::Processor(id) => entry.processor_id == Some(id),
        }
    }

    /// A change the live feed reported.
    pub fn apply(&mut self, action: DlqAction, entry: &DeadLetter) {
        match action {
            DlqAction::Added => {
                if !self.loaded || !self.matches(entry) || self.entries.iter().any(|e| e.dlq_id == entry.dlq_id) {
                    return;
                }
                self.entries.insert(0, entry.clone());
                self.total += 1;
                if self.entries.len() > 1 {
                    // Keep the same entry selected.
                    self.cursor.selected += 1;
                }
                self.entries.truncate(LOAD_LIMIT as usize);
                self.cursor.selected = self.cursor.selected.min(self.entries.len() - 1);
            }
            DlqAction::Removed => self.remove(entry.dlq_id),
        }
    }

    pub fn remove(&mut self, id: DlqId) {
        if let Some(i) = self.entries.iter().position(|e| e.dlq_id == id) {
            self.entries.remove(i);
            self.total = self.total.saturating_sub(1);
            if i < self.cursor.selected {
                self.cursor.selected -= 1;
            }
            self.cursor.selected = self.cursor.selected.min(self.entries.len().saturating_sub(1));
        }
        self.marked.remove(&id);
    }

    fn selected(&self) -> Option<&DeadLetter> {
        self.entries.get(self.cursor.selected)
    }
}

impl App {
    /// Whether any of `entries` names a subscription, or a processor, the console does not know.
    pub(crate) fn unknown_targets<'a>(&self, entries: impl IntoIterator<Item = &'a DeadLetter>) -> (bool, bool) {
        let (mut subscriptions, mut processors) = (false, false);
        for entry in entries {
            if let Some(id) = entry.subscription_id {
                subscriptions |= !self.subscriptions.items.iter().any(|s| s.subscription_id == id);
            }
            if let Some(id) = entry.processor_id {
                processors |= !self.processors.items.iter().any(|p| p.processor_id == id);
            }
        }
        (subscriptions, processors)
    }

    /// Loads the subscriptions and/or processors again (unless a load is already on its way), so
    /// names of ones created since the last load show.
    pub(crate) fn learn_targets(&mut self, subscriptions: bool, processors: bool) -> Vec<Effect> {
        let mut effects = Vec::new();
        if subscriptions {
            effects.extend(self.poll_subscriptions());
        }
        if processors {
            effects.extend(self.poll_processors());
        }
        effects
    }

    pub(crate) fn dlq_reload(&mut self) -> Vec<Effect> {
        if self.dlq.view == DlqView::Groups {
            let request = self.request_id();
            self.dlq.groups.request = request;
            self.dlq.groups.loading = true;
            self.dlq.groups.stale = false;
            let query = DlqGroupQuery { kind: None, buckets: SPARK_BUCKETS, until: self.now };
            return vec![Effect::DeadLetterGroups { request, query }];
        }
        let request = self.request_id();
        self.dlq.request = request;
        self.dlq.loading = true;
        let mut query = DlqQuery { limit: LOAD_LIMIT, ..DlqQuery::default() };
        match self.dlq.filter {
            DlqFilter::All => {}
            DlqFilter::Subscription(id) => query.subscription_id = Some(id),
            DlqFilter::Processor(id) => query.processor_id = Some(id),
        }
        vec![Effect::DeadLetters { request, query }]
    }

    pub(crate) fn dlq_loaded(&mut self, request: u64, result: Result<DlqPage, Error>) -> Vec<Effect> {
        if request != self.dlq.request {
            return Vec::new();
        }
        self.dlq.loading = false;
        match result {
            Ok(page) => {
                let selected = self.dlq.selected().map(|e| e.dlq_id);
                self.dlq.entries = page.entries;
                self.dlq.total = page.total;
                self.dlq.loaded = true;
                self.dlq.error = None;
                let present: BTreeSet<DlqId> = self.dlq.entries.iter().map(|e| e.dlq_id).collect();
                self.dlq.marked.retain(|id| present.contains(id));
                let rows = self.list_rows();
                let index = selected.and_then(|id| self.dlq.entries.iter().position(|e| e.dlq_id == id));
                match index {
                    Some(i) => self.dlq.cursor.select(i, self.dlq.entries.len(), rows),
                    None => self.dlq.cursor.clamp(self.dlq.entries.len(), rows),
                }
                let (subscriptions, processors) = self.unknown_targets(self.dlq.entries.iter());
                return self.learn_targets(subscriptions, processors);
            }
            Err(error) => {
                self.dlq.error = Some(error.to_string());
                self.error("dead letters", error);
            }
        }
        Vec::new()
    }

    pub(crate) fn dlq_groups_loaded(&mut self, request: u64, result: Result<DlqGroups, Error>) -> Vec<Effect> {
        if request != self.dlq.groups.request {
            return Vec::new();
        }
        self.dlq.groups.loading = false;
        match result {
            Ok(answer) => {
                let selected = self.dlq.groups.selected().map(|g| g.key.clone());
                let index = selected.and_then(|key| answer.groups.iter().position(|g| g.key == key));
                let len = answer.groups.len();
                let (subscriptions, processors) = answer.groups.iter().fold((false, false), |(s, p), g| {
                    let unknown_s = g
                        .key
                        .subscription_id
                        .is_some_and(|id| !self.subscriptions.items.iter().any(|x| x.subscription_id == id));
                    let unknown_p = g
                        .key
                        .processor_id
                        .is_some_and(|id| !self.processors.items.iter().any(|x| x.processor_id == id));
                    (s || unknown_s, p || unknown_p)
                });
                self.dlq.groups.answer = Some(answer);
                self.dlq.groups.error = None;
                let rows = self.list_rows();
                match index {
                    Some(i) => self.dlq.groups.cursor.select(i, len, rows),
                    None => self.dlq.groups.cursor.clamp(len, rows),
                }
                return self.learn_targets(subscriptions, processors);
            }
            Err(error) => {
                self.dlq.groups.error = Some(error.to_string());
                self.error("dead-letter groups", error);
            }
        }
        Vec::new()
    }

    fn dlq_group_command(&mut self, command: Command) -> Vec<Effect> {
        let rows = self.list_rows();
        let len = self.dlq.groups.groups().len();
        if self.dlq.groups.cursor.navigate(command, len, rows) {
            return Vec::new();
        }
        match command {
            Command::Open => {
                if let Some(group) = self.dlq.groups.selected() {
                    let title = format!("Dead letters · {} · {}", group_target(self, group), cause(group));
                    let view = serde_json::json!({
                        "target": group_target(self, group),
                        "cause": cause(group),
                        "group": group,
                    });
                    self.popup = Some(Popup::Detail(Detail::json(title, DetailKey::Group, &view)));
                }
            }
            Command::Retry | Command::RetryMarked | Command::Discard => {
                if let Some(group) = self.dlq.groups.selected() {
                    let n = group.count;
                    let entries = format!("{} entr{}", count(n), if n == 1 { "y" } else { "ies" });
                    let what = format!(
                        "{} × {} {} · {}",
                        count(n),
                        group.key.kind.as_str(),
                        group_target(self, group),
                        cause(group)
                    );
                    let selector = DlqSelector::Group(group.key.clone());
                    let plural = if n == 1 { "" } else { "s" };
                    let confirm = if command == Command::Discard {
                        Confirm {
                            title: format!("Discard {} dead letter{plural}", count(n)),
                            message: format!(
                                "Discard the group {what}? {entries} (and any that joined it since) are removed for good; \
                                 the events themselves stay stored."
                            ),
                            op: PendingOp::DiscardDeadLetters { selector, count: n },
                        }
                    } else {
                        Confirm {
                            title: format!("Retry {} dead letter{plural}", count(n)),
                            message: format!(
                                "Send the group {what} again with a fresh retry budget? {entries} (and any that joined \
                                 it since) leave the queue."
                            ),
                            op: PendingOp::RetryDeadLetters { selector, count: n as usize },
                        }
                    };
                    self.popup = Some(Popup::Confirm(confirm));
                }
            }
            _ => {}
        }
        Vec::new()
    }

    pub(crate) fn dlq_command(&mut self, command: Command) -> Vec<Effect> {
        if command == Command::ToggleGroups {
            self.dlq.view = match self.dlq.view {
                DlqView::Entries => DlqView::Groups,
                DlqView::Groups => DlqView::Entries,
            };
            return self.dlq_reload();
        }
        if command == Command::Refresh {
            return self.dlq_reload();
        }
        if self.dlq.view == DlqView::Groups {
            return self.dlq_group_command(command);
        }
        let rows = self.list_rows();
        let len = self.dlq.entries.len();
        match command {
            Command::Up => self.dlq.cursor.move_by(-1, len, rows),
            Command::Down => self.dlq.cursor.move_by(1, len, rows),
            Command::PageUp => self.dlq.cursor.move_by(-(rows as isize), len, rows),
            Command::PageDown => self.dlq.cursor.move_by(rows as isize, len, rows),
            Command::Top => self.dlq.cursor.select(0, len, rows),
            Command::Bottom => self.dlq.cursor.select(len.saturating_sub(1), len, rows),
            Command::Refresh => return self.dlq_reload(),
            Command::Open => {
                if let Some(entry) = self.dlq.selected() {
                    let title = format!(
                        "Dead letter · {} · {} · {} · {}",
                        entry.kind.as_str(),
                        entry.event_type,
                        target_name(self, entry),
                        entry.dlq_id
                    );
                    let id = entry.dlq_id;
                    self.popup = Some(Popup::Detail(Detail::loading(title, DetailKey::DeadLetter(id))));
                    return vec![Effect::DeadLetter(id)];
                }
            }
            Command::Mark => {
                if let Some(id) = self.dlq.selected().map(|e| e.dlq_id) {
                    if !self.dlq.marked.remove(&id) {
                        self.dlq.marked.insert(id);
                    }
                    self.dlq.cursor.move_by(1, len, rows);
                }
            }
            Command::Retry => {
                if let Some(entry) = self.dlq.selected() {
                    let message = format!(
                        "Send the {} of {} (to {}) again with a fresh retry budget? 1 entry leaves the queue.",
                        entry.kind.as_str(),
                        entry.event_type,
                        target_name(self, entry)
                    );
                    let op = PendingOp::RetryDeadLetters { selector: DlqSelector::Ids(vec![entry.dlq_id]), count: 1 };
                    self.popup = Some(Popup::Confirm(Confirm { title: "Retry 1 dead letter".into(), message, op }));
                }
            }
            Command::RetryMarked => self.confirm_retry_many(),
            Command::Discard => {
                if let Some(entry) = self.dlq.selected() {
                    let message = format!(
                        "Discard the dead letter of {} ({})? 1 entry is removed for good; the event itself stays stored.",
                        entry.event_type,
                        target_name(self, entry)
                    );
                    let op = PendingOp::DiscardDeadLetter(entry.dlq_id);
                    self.popup = Some(Popup::Confirm(Confirm { title: "Discard 1 dead letter".into(), message, op }));
                }
            }
            Command::NextFilter | Command::PrevFilter => {
                let mut choices = vec![DlqFilter::All];
                choices.extend(self.subscriptions.items.iter().map(|s| DlqFilter::Subscription(s.subscription_id)));
                choices.extend(self.processors.items.iter().map(|p| DlqFilter::Processor(p.processor_id)));
                let at = choices.iter().position(|f| *f == self.dlq.filter).unwrap_or(0);
                let n = choices.len();
                let next = if command == Command::NextFilter { (at + 1) % n } else { (at + n - 1) % n };
                self.dlq.filter = choices[next];
                self.dlq.marked.clear();
                self.dlq.cursor = ListCursor::default();
                self.dlq.entries.clear();
                self.dlq.loaded = false;
                self.notify(format!("DLQ: {}", filter_name(self)));
                return self.dlq_reload();
            }
            _ => {}
        }
        Vec::new()
    }

    /// `R`: the marked entries, or every entry shown when none is marked, after a confirmation that
    /// gives the count.
    fn confirm_retry_many(&mut self) {
        let (ids, what): (Vec<DlqId>, String) = if self.dlq.marked.is_empty() {
            let ids: Vec<DlqId> = self.dlq.entries.iter().map(|e| e.dlq_id).collect();
            let mut what = format!("all {} shown entries ({})", count(ids.len() as u64), filter_name(self));
            if self.dlq.total > ids.len() as u64 {
                what.push_str(&format!("; the queue holds {}, only those shown are retried", count(self.dlq.total)));
            }
            (ids, what)
        } else {
            let ids: Vec<DlqId> = self.dlq.marked.iter().copied().collect();
            let what = format!("the {} marked entries", count(ids.len() as u64));
            (ids, what)
        };
        if ids.is_empty() {
            self.notify("nothing to retry: the queue shown is empty");
            return;
        }
        let n = ids.len();
        let message =
            format!("Send {what} again with a fresh retry budget? {} entries leave the queue.", count(n as u64));
        let op = PendingOp::RetryDeadLetters { selector: DlqSelector::Ids(ids), count: n };
        let title = format!("Retry {} dead letter{}", count(n as u64), if n == 1 { "" } else { "s" });
        self.popup = Some(Popup::Confirm(Confirm { title, message, op }));
    }
}

fn known_subscription(app: &App, id: SubscriptionId) -> Option<&str> {
    app.subscriptions.items.iter().find(|s| s.subscription_id == id).map(|s| s.subscriber_name.as_str())
}

fn known_processor(app: &App, id: ProcessorId) -> Option<&str> {
    app.processors.items.iter().find(|p| p.processor_id == id).map(|p| p.processor_name.as_str())
}

/// The subscription's name, or `subscription …tail` while the console does not know it (yet).
pub fn subscription_name(app: &App, id: SubscriptionId) -> String {
    known_subscription(app, id).map_or_else(|| format!("subscription {}", short_id(&id)), str::to_owned)
}

/// The processor's name, or `processor …tail` while the console does not know it (yet).
pub fn processor_name(app: &App, id: ProcessorId) -> String {
    known_processor(app, id).map_or_else(|| format!("processor {}", short_id(&id)), str::to_owned)
}

/// The subscription's or processor's name for an entry.
pub fn target_name(app: &App, entry: &DeadLetter) -> String {
    if let Some(id) = entry.subscription_id {
        return subscription_name(app, id);
    }
    if let Some(id) = entry.processor_id {
        return processor_name(app, id);
    }
    "—".to_owned()
}

/// The DLQ filter in words.
pub fn filter_name(app: &App) -> String {
    match app.dlq.filter {
        DlqFilter::All => "every subscription and processor".to_owned(),
        DlqFilter::Subscription(id) => {
            format!("subscription {}", known_subscription(app, id).map_or_else(|| short_id(&id), str::to_owned))
        }
        DlqFilter::Processor(id) => {
            format!("processor {}", known_processor(app, id).map_or_else(|| short_id(&id), str::to_owned))
        }
    }
}

/// A group's cause in words: `HTTP 503`, or the error class.
pub fn cause(group: &DlqGroup) -> String {
    match (&group.key.last_status_code, &group.key.error_class) {
        (Some(code), _) => format!("HTTP {code}"),
        (None, Some(class)) if !class.is_empty() => class.clone(),
        (None, _) => "no error recorded".to_owned(),
    }
}

/// The group's subscription or processor by name.
pub fn group_target(app: &App, group: &DlqGroup) -> String {
    match (group.key.subscription_id, group.key.processor_id) {
        (Some(id), _) => subscription_name(app, id),
        (None, Some(id)) => processor_name(app, id),
        (None, None) => "—".to_owned(),
    }
}

/// Histogram buckets the grouped view asks for (one character each in the sparkline).
pub const SPARK_BUCKETS: u32 = 24;

/// A histogram as a line of block characters, scaled to its largest bucket; empty buckets are `·`.
pub fn sparkline(histogram: &[u64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let max = histogram.iter().copied().max().unwrap_or(0).max(1);
    histogram
        .iter()
        .map(|&n| if n == 0 { '·' } else { BARS[((n * 8).div_ceil(max) as usize).clamp(1, 8) - 1] })
        .collect()
}

fn groups_title(app: &App) -> String {
    let groups = &app.dlq.groups;
    match &groups.answer {
        None => "DLQ · groups by cause".to_owned(),
        Some(answer) => {
            let n = answer.groups.len();
            let mut title = format!(
                "DLQ · {} group{} · {} entries",
                count(n as u64),
                if n == 1 { "" } else { "s" },
                count(answer.total)
            );
            if let Some(since) = answer.since {
                title.push_str(&format!(
                    " · failures since {} ({} per bar)",
                    date_time(since),
                    duration(answer.bucket_s)
                ));
            }
            title
        }
    }
}

/// Seconds in the largest unit that divides them: `45s`, `150s`, `12m`, `3h`, `2d`.
fn duration(seconds: u64) -> String {
    match seconds {
        s if s > 0 && s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        s if s > 0 && s.is_multiple_of(3600) => format!("{}h", s / 3600),
        s if s > 0 && s.is_multiple_of(60) => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn render_groups(frame: &mut Frame, area: Rect, app: &App) {
    let groups = &app.dlq.groups;
    let block = super::block(groups_title(app));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if let Some(error) = &groups.error {
        frame.render_widget(Paragraph::new(Line::styled(format!("cannot load: {error}"), theme::error())), inner);
        return;
    }
    let list = groups.groups();
    if list.is_empty() {
        let text = match groups.answer {
            None => Line::styled("loading…", theme::muted()),
            Some(_) => Line::styled(
                "The dead-letter queue is empty: every delivery and processing run succeeded or is still being retried.",
                theme::good(),
            ),
        };
        frame.render_widget(Paragraph::new(text), inner);
        return;
    }
    let rows = usize::from(inner.height.saturating_sub(1));
    let range = groups.cursor.window(list.len(), rows);
    let start = range.start;
    let table_rows: Vec<Row> = list[range]
        .iter()
        .map(|group| {
            Row::new(vec![
                Cell::from(count(group.count)),
                Cell::from(group.key.kind.as_str()),
                Cell::from(group_target(app, group)),
                Cell::from(truncate(&cause(group), 60)).style(theme::error()),
                Cell::from(date_time(group.first_failed_at)[11..].to_owned()),
                Cell::from(age(group.last_failed_at, app.now)),
                Cell::from(sparkline(&group.histogram)).style(theme::warning()),
            ])
        })
        .collect();
    let widths = [
        Constraint::Length(8),
        Constraint::Length(10),
        Constraint::Length(24),
        Constraint::Fill(2),
        Constraint::Length(8),
        Constraint::Length(5),
        Constraint::Length(SPARK_BUCKETS as u16),
    ];
    let header =
        Row::new(["Count", "Kind", "Target", "Cause", "Since", "Last", "Failures over time"]).style(theme::header());
    let table = Table::new(table_rows, widths).header(header).row_highlight_style(theme::selected()).column_spacing(1);
    let mut state = TableState::default().with_selected(Some(groups.cursor.selected.saturating_sub(start)));
    frame.render_stateful_widget(table, inner, &mut state);
}

pub fn title(app: &App) -> String {
    let dlq = &app.dlq;
    let mut title = format!("DLQ · {} entries", count(dlq.total));
    if dlq.total > dlq.entries.len() as u64 && dlq.loaded {
        title.push_str(&format!(" ({} loaded)", count(dlq.entries.len() as u64)));
    }
    if !dlq.marked.is_empty() {
        title.push_str(&format!(" · {} marked", count(dlq.marked.len() as u64)));
    }
    if dlq.filter != DlqFilter::All {
        title.push_str(&format!(" · {}", filter_name(app)));
    }
    title
}

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    if app.dlq.view == DlqView::Groups {
        return render_groups(frame, area, app);
    }
    let dlq = &app.dlq;
    let block = super::block(title(app));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if let Some(error) = &dlq.error {
        frame.render_widget(Paragraph::new(Line::styled(format!("cannot load: {error}"), theme::error())), inner);
        return;
    }
    if dlq.entries.is_empty() {
        let text = if !dlq.loaded {
            Line::styled("loading…", theme::muted())
        } else if dlq.filter == DlqFilter::All {
            Line::styled(
                "The dead-letter queue is empty: every delivery and processing run succeeded or is still being retried.",
                theme::good(),
            )
        } else {
            Line::styled(format!("No dead letters for {}. f / F changes the filter.", filter_name(app)), theme::good())
        };
        frame.render_widget(Paragraph::new(text), inner);
        return;
    }
    let rows = usize::from(inner.height.saturating_sub(1));
    let range = dlq.cursor.window(dlq.entries.len(), rows);
    let start = range.start;
    let table_rows: Vec<Row> = dlq.entries[range]
        .iter()
        .map(|entry| {
            let marked = dlq.marked.contains(&entry.dlq_id);
            let last = match (entry.last_status_code, &entry.last_error) {
                (Some(code), Some(error)) if error.contains(&code.to_string()) => error.clone(),
                (Some(code), Some(error)) => format!("{code} {error}"),
                (Some(code), None) => code.to_string(),
                (None, Some(error)) => error.clone(),
                (None, None) => String::new(),
            };
            Row::new(vec![
                Cell::from(if marked { "●" } else { " " }).style(theme::marked()),
                Cell::from(entry.kind.as_str()),
                Cell::from(entry.event_type.clone()),
                Cell::from(target_name(app, entry)),
                Cell::from(entry.attempts.to_string()),
                Cell::from(truncate(&last, 120)).style(theme::error()),
                Cell::from(age(entry.last_failed_at, app.now)),
            ])
        })
        .collect();
    let widths = [
        Constraint::Length(1),
        Constraint::Length(10),
        Constraint::Min(16),
        Constraint::Length(22),
        Constraint::Length(8),
        Constraint::Fill(2),
        Constraint::Length(5),
    ];
    let header =
        Row::new(["", "Kind", "Event type", "Target", "Attempts", "Last status / error", "Age"]).style(theme::header());
    let table = Table::new(table_rows, widths).header(header).row_highlight_style(theme::selected()).column_spacing(1);
    let mut state = TableState::default().with_selected(Some(dlq.cursor.selected.saturating_sub(start)));
    frame.render_stateful_widget(table, inner, &mut state);
}
