//! The Streams pane: streams listed by id prefix (`order:`), and one stream as a timeline of its
//! events with the projection state beside it. `←`/`→` step through versions (time travel through
//! the projection's `at_version`), `t` jumps to a time, and the fields that changed from the version
//! before are highlighted.

use std::collections::BTreeMap;
use std::sync::Arc;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState};
use serde_json::Value;

use crate::domain::{Event, Projection, Timestamp};
use crate::service::Error;
use crate::storage::StreamSummary;
use crate::tui::action::Command;
use crate::tui::app::App;
use crate::tui::effects::Effect;
use crate::tui::popups::{CommandLine, Popup, Prompt, PromptFor};
use crate::tui::theme;
use crate::tui::widgets::cursor::ListCursor;
use crate::tui::widgets::format::{age, count, date_time, truncate};

/// Streams listed at once.
pub const LIST_LIMIT: u32 = 500;
/// Events of one stream loaded at once, around the version shown.
pub const WINDOW: u32 = 1000;

#[derive(Debug, Default)]
pub struct StreamsState {
    pub prefix: String,
    pub list: Vec<StreamSummary>,
    pub cursor: ListCursor,
    pub loading: bool,
    pub loaded: bool,
    pub request: u64,
    pub error: Option<String>,
    /// The stream being looked at, when one is open.
    pub open: Option<StreamView>,
}

/// One stream at one version.
#[derive(Debug, Default)]
pub struct StreamView {
    pub stream_id: String,
    /// The stream's current version.
    pub version: i64,
    /// Loaded events, in version order, from `first` on.
    pub events: Vec<Arc<Event>>,
    pub first: i64,
    /// The version shown.
    pub at: i64,
    pub events_request: u64,
    pub state_request: u64,
    /// The state after `at`, and after `at - 1` (`None` before the first event).
    pub state: Option<Result<Value, String>>,
    pub before: Option<Value>,
    pub loading: bool,
}

impl StreamView {
    fn new(stream_id: String, version: i64) -> Self {
        Self { stream_id, version, at: version, ..Self::default() }
    }

    /// The event at the version shown, when loaded.
    pub fn event_at(&self) -> Option<&Arc<Event>> {
        usize::try_from(self.at - self.first).ok().and_then(|i| self.events.get(i))
    }

    /// `entity_type` and `entity_id` of the stream id.
    pub fn entity(&self) -> (String, String) {
        let (kind, id) = self.stream_id.split_once(':').unwrap_or((&self.stream_id, ""));
        (kind.to_owned(), id.to_owned())
    }
}

/// How a field differs between two states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Added,
    Changed,
    Removed,
}

/// The fields that differ from `before` to `after`, by dotted path (`address.city`; array items are
/// compared whole). A field that is new or gone is one entry, its children are not listed.
pub fn diff(before: &Value, after: &Value) -> BTreeMap<String, Change> {
    let mut out = BTreeMap::new();
    walk("", before, after, &mut out);
    out
}

fn walk(path: &str, before: &Value, after: &Value, out: &mut BTreeMap<String, Change>) {
    let join = |key: &str| if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            for (key, value) in a {
                match b.get(key) {
                    None => {
                        out.insert(join(key), Change::Added);
                    }
                    Some(old) => walk(&join(key), old, value, out),
                }
            }
            for key in b.keys().filter(|k| !a.contains_key(*k)) {
                out.insert(join(key), Change::Removed);
            }
        }
        (b, a) if b != a => {
            out.insert(if path.is_empty() { "(state)".to_owned() } else { path.to_owned() }, Change::Changed);
        }
        _ => {}
    }
}

/// `value` as pretty JSON lines, the fields in `changes` highlighted (and their children).
pub fn state_lines(value: &Value, changes: &BTreeMap<String, Change>) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    if value.is_null() {
        lines.push(Line::styled("null: the entity is deleted at this version", theme::warning()));
        return lines;
    }
    if changes.contains_key("(state)") && !value.is_object() {
        lines.push(Line::styled(value.to_string(), theme::warning()));
        return lines;
    }
    let Value::Object(map) = value else {
        lines.push(Line::raw(value.to_string()));
        return lines;
    };
    lines.push(Line::raw("{"));
    fields(map, "", 1, changes, false, &mut lines);
    lines.push(Line::raw("}"));
    for (path, change) in changes {
        if *change == Change::Removed {
            lines.push(Line::styled(format!("  − {path} (removed)"), theme::error()));
        }
    }
    lines
}

fn fields(
    map: &serde_json::Map<String, Value>,
    path: &str,
    depth: usize,
    changes: &BTreeMap<String, Change>,
    inherited: bool,
    lines: &mut Vec<Line<'static>>,
) {
    let indent = "  ".repeat(depth);
    let n = map.len();
    for (i, (key, value)) in map.iter().enumerate() {
        let here = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
        let change = changes.get(&here).copied();
        let marked = inherited || change.is_some();
        let style = match (inherited, change) {
            (_, Some(Change::Added)) | (true, _) => theme::good(),
            (_, Some(Change::Changed)) => theme::warning(),
            _ => Style::new(),
        };
        let sign = match change {
            Some(Change::Added) => "+ ",
            Some(Change::Changed) => "~ ",
            _ if inherited => "+ ",
            _ => "  ",
        };
        let comma = if i + 1 < n { "," } else { "" };
        match value {
            Value::Object(inner) if !inner.is_empty() => {
                lines.push(Line::from(vec![
                    Span::styled(sign, style),
                    Span::raw(indent.clone()),
                    Span::styled(format!("\"{key}\": {{"), if marked { style } else { theme::json_key() }),
                ]));
                fields(inner, &here, depth + 1, changes, inherited || change == Some(Change::Added), lines);
                lines.push(Line::raw(format!("  {indent}}}{comma}")));
            }
            _ => {
                let text = value.to_string();
                lines.push(Line::from(vec![
                    Span::styled(sign, style),
                    Span::raw(indent.clone()),
                    Span::styled(format!("\"{key}\": "), if marked { style } else { theme::json_key() }),
                    Span::styled(format!("{text}{comma}"), if marked { style } else { Style::new() }),
                ]));
            }
        }
    }
}

impl App {
    pub(crate) fn streams_reload(&mut self) -> Vec<Effect> {
        let request = self.request_id();
        self.streams.request = request;
        self.streams.loading = true;
        vec![Effect::Streams { request, prefix: self.streams.prefix.clone(), limit: LIST_LIMIT }]
    }

    /// `:streams PREFIX` and the `/` prompt: list the streams that start with `prefix`.
    pub(crate) fn streams_search(&mut self, prefix: String) -> Vec<Effect> {
        self.pane = crate::tui::panes::Pane::Streams;
        self.streams.prefix = prefix;
        self.streams.open = None;
        self.streams.cursor = ListCursor::default();
        self.streams_reload()
    }

    pub(crate) fn streams_loaded(&mut self, request: u64, result: Result<Vec<StreamSummary>, Error>) {
        if request != self.streams.request {
            return;
        }
        self.streams.loading = false;
        match result {
            Ok(list) => {
                self.streams.list = list;
                self.streams.loaded = true;
                self.streams.error = None;
                let rows = self.list_rows();
                self.streams.cursor.clamp(self.streams.list.len(), rows);
            }
            Err(error) => {
                self.streams.error = Some(error.to_string());
                self.error("streams", error);
            }
        }
    }

    /// Loads the events around the version shown when it is outside what is loaded, and the state at
    /// it (and at the version before, for the changes).
    fn stream_show(&mut self) -> Vec<Effect> {
        let (events_request, state_request) = (self.request_id(), self.request_id());
        let Some(view) = self.streams.open.as_mut() else { return Vec::new() };
        let mut effects = Vec::new();
        let loaded = view.at >= view.first && view.at < view.first + view.events.len() as i64;
        if !loaded {
            view.events_request = events_request;
            let from_version = (view.at - i64::from(WINDOW) / 2).max(1);
            effects.push(Effect::StreamEvents {
                request: events_request,
                stream_id: view.stream_id.clone(),
                from_version,
                limit: WINDOW,
            });
        }
        view.state_request = state_request;
        view.loading = true;
        let (entity_type, entity_id) = view.entity();
        effects.push(Effect::StreamState { request: state_request, entity_type, entity_id, version: view.at });
        effects
    }

    pub(crate) fn stream_events_loaded(&mut self, request: u64, result: Result<crate::service::StreamEvents, Error>) {
        let Some(view) = self.streams.open.as_mut().filter(|v| v.events_request == request) else { return };
        match result {
            Ok(page) => {
                view.version = page.version;
                view.first = page.events.first().and_then(|e| e.stream_version).unwrap_or(1);
                view.events = page.events;
            }
            Err(error) => {
                view.state = Some(Err(error.to_string()));
                self.error("stream", error);
            }
        }
    }

    pub(crate) fn stream_state_loaded(
        &mut self,
        request: u64,
        state: Result<Projection, Error>,
        before: Option<Result<Projection, Error>>,
    ) {
        let Some(view) = self.streams.open.as_mut().filter(|v| v.state_request == request) else { return };
        view.loading = false;
        view.state = Some(state.map(|p| p.state).map_err(|e| e.to_string()));
        view.before = before.and_then(Result::ok).map(|p| p.state);
    }

    /// The answer to `t`: the state at a time says which version that was.
    pub(crate) fn stream_jumped(
        &mut self,
        request: u64,
        at: Timestamp,
        result: Result<Projection, Error>,
    ) -> Vec<Effect> {
        let Some(view) = self.streams.open.as_mut().filter(|v| v.state_request == request) else { return Vec::new() };
        view.loading = false;
        match result {
            Ok(projection) => {
                view.at = projection.version.clamp(1, view.version.max(1));
                let message =
                    format!("{}: version {} was current at {}", view.stream_id, projection.version, date_time(at));
                self.notify(message);
                self.stream_show()
            }
            Err(Error::NotFound { .. }) => {
                let message = format!("{} had no events yet at {}", view.stream_id, date_time(at));
                self.notify(message);
                Vec::new()
            }
            Err(error) => {
                self.error("stream at a time", error);
                Vec::new()
            }
        }
    }

    /// The `t` prompt's answer: a time as the filter form takes it.
    pub(crate) fn stream_jump_to(&mut self, text: &str) -> Result<Vec<Effect>, String> {
        let at = crate::tui::popups::filter::parse_time(text, self.now)?
            .ok_or_else(|| "type a time: 15m, 2h, 7d ago, a day like 2026-01-02, or RFC 3339".to_owned())?;
        let request = self.request_id();
        let Some(view) = self.streams.open.as_mut() else { return Ok(Vec::new()) };
        view.state_request = request;
        view.loading = true;
        let (entity_type, entity_id) = view.entity();
        Ok(vec![Effect::StreamAt { request, entity_type, entity_id, at }])
    }

    pub(crate) fn streams_command(&mut self, command: Command) -> Vec<Effect> {
        let rows = self.list_rows();
        if let Some(view) = self.streams.open.as_mut() {
            let last = view.version.max(1);
            let step = |at: i64, by: i64| (at + by).clamp(1, last);
            let page = rows as i64;
            let at = match command {
                Command::Close => {
                    self.streams.open = None;
                    return Vec::new();
                }
                Command::StepBack | Command::Up => step(view.at, -1),
                Command::StepForward | Command::Down => step(view.at, 1),
                Command::PageUp => step(view.at, -page),
                Command::PageDown => step(view.at, page),
                Command::Top => 1,
                Command::Bottom => last,
                Command::JumpToTime => {
                    let prompt = Prompt {
                        purpose: PromptFor::StreamTime,
                        title: format!("{} at which time? 15m, 2h, 7d ago, 2026-01-02 or RFC 3339", view.stream_id),
                        line: CommandLine::default(),
                    };
                    self.popup = Some(Popup::Prompt(prompt));
                    return Vec::new();
                }
                Command::Refresh => {
                    view.events.clear();
                    view.at
                }
                _ => return Vec::new(),
            };
            if at == view.at && !view.events.is_empty() {
                return Vec::new();
            }
            view.at = at;
            return self.stream_show();
        }
        let len = self.streams.list.len();
        if self.streams.cursor.navigate(command, len, rows) {
            return Vec::new();
        }
        match command {
            Command::Refresh => return self.streams_reload(),
            Command::Filter => {
                let mut line = CommandLine::default();
                line.input = self.streams.prefix.clone();
                line.cursor = line.input.chars().count();
                let title = "Streams whose id starts with (e.g. order:, users:u1; empty for all)".to_owned();
                self.popup = Some(Popup::Prompt(Prompt { purpose: PromptFor::StreamPrefix, title, line }));
            }
            Command::Open => {
                if let Some(summary) = self.streams.list.get(self.streams.cursor.selected) {
                    self.streams.open = Some(StreamView::new(summary.stream_id.clone(), summary.version));
                    return self.stream_show();
                }
            }
            _ => {}
        }
        Vec::new()
    }
}

pub fn title(app: &App) -> String {
    let streams = &app.streams;
    if let Some(view) = &streams.open {
        return format!(
            "Streams · {} · version {} of {}",
            view.stream_id,
            count(view.at as u64),
            count(view.version as u64)
        );
    }
    let prefix = if streams.prefix.is_empty() {
        "every stream".to_owned()
    } else {
        format!("id starts with {}", streams.prefix)
    };
    let more = if streams.list.len() as u32 >= LIST_LIMIT { "+" } else { "" };
    format!("Streams · {prefix} · {}{more} shown", count(streams.list.len() as u64))
}

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let block = super::block(title(app));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    match &app.streams.open {
        Some(view) => render_stream(frame, inner, view),
        None => render_list(frame, inner, app),
    }
}

fn render_list(frame: &mut Frame, area: Rect, app: &App) {
    let streams = &app.streams;
    if let Some(error) = &streams.error {
        frame.render_widget(Paragraph::new(Line::styled(format!("cannot list: {error}"), theme::error())), area);
        return;
    }
    if streams.list.is_empty() {
        let text = if !streams.loaded {
            Line::styled("loading…", theme::muted())
        } else {
            Line::styled(
                "No stream starts with that. / changes the prefix; events join a stream with stream_id (entity_type:entity_id).",
                theme::muted(),
            )
        };
        frame.render_widget(Paragraph::new(text), area);
        return;
    }
    let rows = usize::from(area.height.saturating_sub(1));
    let range = streams.cursor.window(streams.list.len(), rows);
    let start = range.start;
    let table_rows: Vec<Row> = streams.list[range]
        .iter()
        .map(|s| {
            Row::new(vec![
                Cell::from(s.stream_id.clone()),
                Cell::from(count(s.version as u64)),
                Cell::from(s.last_event_type.clone()),
                Cell::from(date_time(s.last_event_at)),
                Cell::from(age(s.last_event_at, app.now)),
            ])
        })
        .collect();
    let widths = [
        Constraint::Fill(2),
        Constraint::Length(9),
        Constraint::Fill(1),
        Constraint::Length(19),
        Constraint::Length(5),
    ];
    let header = Row::new(["Stream", "Version", "Last event", "Last event at", "Age"]).style(theme::header());
    let table = Table::new(table_rows, widths).header(header).row_highlight_style(theme::selected()).column_spacing(1);
    let mut state = TableState::default().with_selected(Some(streams.cursor.selected.saturating_sub(start)));
    frame.render_stateful_widget(table, area, &mut state);
}

fn render_stream(frame: &mut Frame, area: Rect, view: &StreamView) {
    let [timeline, state] = Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(area);
    // The timeline: one row per version, the one shown selected.
    let rows = usize::from(timeline.height.saturating_sub(1));
    let selected = usize::try_from(view.at - view.first).unwrap_or(0);
    let cursor = ListCursor { selected, top: selected.saturating_sub(rows / 2) };
    let range = cursor.window(view.events.len(), rows);
    let start = range.start;
    let table_rows: Vec<Row> = view.events[range]
        .iter()
        .map(|e| {
            Row::new(vec![
                Cell::from(e.stream_version.map_or(String::new(), |v| v.to_string())),
                Cell::from(date_time(e.timestamp)),
                Cell::from(e.event_type.clone()),
            ])
        })
        .collect();
    let widths = [Constraint::Length(7), Constraint::Length(19), Constraint::Fill(1)];
    let header = Row::new(["Version", "Time", "Event"]).style(theme::header());
    let table = Table::new(table_rows, widths).header(header).row_highlight_style(theme::selected()).column_spacing(1);
    let in_window = view.at >= view.first && selected < view.events.len();
    let mut table_state = TableState::default().with_selected(in_window.then(|| selected.saturating_sub(start)));
    frame.render_stateful_widget(table, timeline, &mut table_state);

    // The state at the version shown, with what changed from the version before.
    let mut lines = Vec::new();
    let when = view.event_at().map_or(String::new(), |e| format!(" · {} · {}", e.event_type, date_time(e.timestamp)));
    lines.push(Line::from(vec![
        Span::styled(format!("State at version {}{when}", view.at), theme::header()),
        Span::styled("   ←/→ step · t time · Esc list", theme::muted()),
    ]));
    match &view.state {
        None => lines.push(Line::styled("loading…", theme::muted())),
        Some(Err(error)) => lines.push(Line::styled(format!("cannot read the state: {error}"), theme::error())),
        Some(Ok(value)) => {
            let before = view.before.clone().unwrap_or(Value::Object(Default::default()));
            let changes = diff(&before, value);
            let summary = if changes.is_empty() {
                "no field changed".to_owned()
            } else {
                let names: Vec<String> = changes
                    .iter()
                    .map(|(path, change)| match change {
                        Change::Added => format!("+{path}"),
                        Change::Changed => format!("~{path}"),
                        Change::Removed => format!("−{path}"),
                    })
                    .collect();
                truncate(&format!("changed from version {}: {}", view.at - 1, names.join(" ")), 200)
            };
            lines.push(Line::styled(summary, theme::muted()));
            lines.extend(state_lines(value, &changes));
        }
    }
    if view.loading && view.state.is_some() {
        lines.push(Line::styled("loading…", theme::muted()));
    }
    frame.render_widget(Paragraph::new(lines), state);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diff_names_added_changed_and_removed_fields_by_path() {
        let before = json!({"status": "new", "total": 10, "address": {"city": "Oslo", "zip": "0150"}, "note": "x"});
        let after = json!({"status": "paid", "total": 10, "address": {"city": "Bergen", "zip": "0150"}, "paid_at": 1});
        let changes = diff(&before, &after);
        let expected = BTreeMap::from([
            ("status".to_owned(), Change::Changed),
            ("address.city".to_owned(), Change::Changed),
            ("paid_at".to_owned(), Change::Added),
            ("note".to_owned(), Change::Removed),
        ]);
        assert_eq!(changes, expected);
        assert!(diff(&after, &after).is_empty());
        assert_eq!(diff(&json!(null), &json!({"a": 1})), BTreeMap::from([("(state)".to_owned(), Change::Changed)]));
    }
}
