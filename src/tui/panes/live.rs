//! The Live pane: new events as they are stored, newest at the bottom, in a bounded ring buffer;
//! pause, filter, and the detail view of one event.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState, Wrap};

use crate::domain::{Event, EventFilter};
use crate::service::StatusChange;
use crate::tui::action::{Command, EventDetail};
use crate::tui::app::App;
use crate::tui::effects::Effect;
use crate::tui::popups::detail::section;
use crate::tui::popups::filter::{FilterForm, FilterTarget, FilterValues, LIVE_FIELDS};
use crate::tui::popups::{Detail, DetailKey, Popup};
use crate::tui::theme;
use crate::tui::widgets::cursor::visible_top;
use crate::tui::widgets::format::{clock, count, rate, truncate};

/// Seconds the arrival rate is averaged over.
const RATE_WINDOW: usize = 5;

#[derive(Debug)]
pub struct LiveState {
    /// The ring buffer, oldest first, ordered by seq; never longer than `capacity`.
    pub events: VecDeque<Arc<Event>>,
    /// Events that arrived while paused (bounded the same way), shown on resume.
    pub held: VecDeque<Arc<Event>>,
    pub capacity: usize,
    pub paused: bool,
    /// Events that arrived while paused and fell out of `held`.
    pub held_dropped: u64,
    /// The selected event's seq; `None` follows the newest event.
    pub selected: Option<i64>,
    /// The seq of the first row shown while not following.
    pub top_seq: Option<i64>,
    pub values: FilterValues,
    pub filter: EventFilter,
    /// Tells the current feed's batches from a replaced feed's.
    pub generation: u64,
    /// Why the feed stopped, while it is resuming.
    pub feed_error: Option<String>,
    /// Matching events per second, over the last few seconds.
    pub rate: f64,
    arrivals: VecDeque<u64>,
    this_second: u64,
    /// Events received since the console opened (or the filter changed).
    pub received: u64,
    /// Items the feed task left out because the console fell behind.
    pub dropped: u64,
}

impl LiveState {
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            events: VecDeque::with_capacity(capacity.min(4096)),
            held: VecDeque::new(),
            capacity,
            paused: false,
            held_dropped: 0,
            selected: None,
            top_seq: None,
            values: FilterValues::default(),
            filter: EventFilter::default(),
            generation: 0,
            feed_error: None,
            rate: 0.0,
            arrivals: VecDeque::with_capacity(RATE_WINDOW + 1),
            this_second: 0,
            received: 0,
            dropped: 0,
        }
    }

    /// A new feed for the current filter; batches of older feeds are ignored from now on.
    pub fn start_feed(&mut self) -> Effect {
        self.generation += 1;
        Effect::StartFeed { generation: self.generation, filter: self.filter.clone() }
    }

    /// Adds a stored event; `arrived` counts it in the rate (backfilled events are not).
    pub fn push(&mut self, event: Arc<Event>, arrived: bool) {
        if arrived {
            self.received += 1;
            self.this_second += 1;
        }
        // The backfill and the feed may overlap by an event; seqs only grow.
        let newest = self.held.back().or(self.events.back()).map(|e| e.seq);
        if newest.is_some_and(|seq| seq >= event.seq) {
            return;
        }
        if self.paused {
            self.held.push_back(event)
        } else {
            self.events.push_back(event)
        }
        if self.paused {
            if self.held.len() > self.capacity {
                self.held.pop_front();
                self.held_dropped += 1;
            }
        } else {
            self.trim();
        }
    }

    fn trim(&mut self) {
        while self.events.len() > self.capacity {
            self.events.pop_front();
        }
        if let (Some(selected), Some(front)) = (self.selected, self.events.front())
            && selected < front.seq
        {
            self.selected = Some(front.seq);
        }
    }

    pub fn apply_status(&mut self, change: &StatusChange) {
        for list in [&mut self.events, &mut self.held] {
            if let Ok(i) = list.binary_search_by_key(&change.seq, |e| e.seq) {
                let mut event = (*list[i]).clone();
                event.status = change.status;
                event.error_message.clone_from(&change.error_message);
                list[i] = Arc::new(event);
            }
        }
    }

    pub fn pause(&mut self) {
        self.paused = true;
    }

    /// Shows what arrived while paused and follows again.
    pub fn resume(&mut self) {
        self.paused = false;
        while let Some(event) = self.held.pop_front() {
            if self.events.back().is_none_or(|last| last.seq < event.seq) {
                self.events.push_back(event);
            }
        }
        self.held_dropped = 0;
        self.trim();
    }

    /// Closes the current second of the arrival rate.
    pub fn tick(&mut self) {
        self.arrivals.push_back(self.this_second);
        self.this_second = 0;
        while self.arrivals.len() > RATE_WINDOW {
            self.arrivals.pop_front();
        }
        self.rate = self.arrivals.iter().sum::<u64>() as f64 / self.arrivals.len().max(1) as f64;
    }

    fn index_of(&self, seq: i64) -> usize {
        self.events.partition_point(|e| e.seq < seq)
    }

    pub fn selected_index(&self) -> Option<usize> {
        let last = self.events.len().checked_sub(1)?;
        self.selected.map(|seq| self.index_of(seq).min(last))
    }

    /// The rows to draw in a viewport of `rows`, and the selected one.
    pub fn window(&self, rows: usize) -> (Range<usize>, Option<usize>) {
        let len = self.events.len();
        match self.selected_index() {
            None => (len.saturating_sub(rows)..len, None),
            Some(i) => {
                let top = self.top_seq.map_or(0, |seq| self.index_of(seq));
                let top = visible_top(i, top, rows).min(len);
                (top..(top + rows).min(len), Some(i))
            }
        }
    }

    fn select(&mut self, index: usize, rows: usize) {
        let Some(last) = self.events.len().checked_sub(1) else { return };
        let index = index.min(last);
        let (current, _) = self.window(rows);
        let top = visible_top(index, current.start, rows);
        self.selected = Some(self.events[index].seq);
        self.top_seq = self.events.get(top).map(|e| e.seq);
    }

    fn follow(&mut self) {
        self.selected = None;
        self.top_seq = None;
    }

    /// Moves the selection; moving down past the newest event follows again.
    fn move_by(&mut self, delta: isize, rows: usize) {
        let len = self.events.len();
        if len == 0 {
            return;
        }
        let from = self.selected_index().unwrap_or(len);
        let to = from as isize + delta;
        if to >= len as isize {
            self.follow();
        } else {
            self.select(to.max(0) as usize, rows);
        }
    }

    /// The selected event, or the newest when following.
    pub fn current(&self) -> Option<&Arc<Event>> {
        match self.selected_index() {
            Some(i) => self.events.get(i),
            None => self.events.back(),
        }
    }
}

impl App {
    pub(crate) fn live_command(&mut self, command: Command) -> Vec<Effect> {
        let rows = self.list_rows();
        match command {
            Command::Pause => {
                if self.live.paused {
                    self.live.resume();
                    self.notify("following new events again");
                } else {
                    self.live.pause();
                    self.notify("paused: new events are kept aside until space");
                }
            }
            Command::Filter => {
                self.popup = Some(Popup::Filter(FilterForm::new(FilterTarget::Live, LIVE_FIELDS, &self.live.values)));
            }
            Command::Up => self.live.move_by(-1, rows),
            Command::Down => self.live.move_by(1, rows),
            Command::PageUp => self.live.move_by(-(rows as isize), rows),
            Command::PageDown => self.live.move_by(rows as isize, rows),
            Command::Top => self.live.select(0, rows),
            Command::Bottom => self.live.follow(),
            Command::Open => {
                if let Some(event) = self.live.current().cloned() {
                    return self.open_event(&event);
                }
            }
            _ => {}
        }
        Vec::new()
    }

    /// Opens the detail view of an event and loads its results and attempts.
    pub(crate) fn open_event(&mut self, event: &Event) -> Vec<Effect> {
        let title = format!("Event #{} · {} · {}", event.seq, event.event_type, event.event_id);
        self.popup = Some(Popup::Detail(Detail::loading(title, DetailKey::Event(event.event_id))));
        vec![Effect::EventDetail(event.event_id)]
    }

    pub(crate) fn apply_live_filter(&mut self, values: FilterValues, filter: EventFilter) -> Vec<Effect> {
        let changed = filter != self.live.filter;
        self.notify(format!("live filter: {}", values.summary()));
        self.live.values = values;
        if !changed {
            return Vec::new();
        }
        self.live.filter = filter;
        self.live.events.clear();
        self.live.held.clear();
        self.live.held_dropped = 0;
        self.live.received = 0;
        self.live.follow();
        vec![self.live.start_feed()]
    }
}

/// The detail view's sections: the event, then what processing and delivery recorded for it.
pub fn detail_sections(detail: &EventDetail) -> Vec<(&'static str, String)> {
    vec![
        ("event", section(&detail.event)),
        ("processing_results", section(&detail.results)),
        ("delivery_attempts", section(&detail.attempts)),
    ]
}

pub fn title(app: &App) -> String {
    let live = &app.live;
    let mut title = format!("Live · {} events · {}", count(live.events.len() as u64), rate(live.rate));
    if live.paused {
        title.push_str(&format!(" · PAUSED (+{} new)", count(live.held.len() as u64 + live.held_dropped)));
    } else if live.selected.is_some() {
        title.push_str(" · scrolled (End follows)");
    }
    if !live.values.is_empty() {
        title.push_str(&format!(" · filter {}", live.values.summary()));
    }
    if live.feed_error.is_some() {
        title.push_str(" · feed reconnecting");
    }
    title
}

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let mut block = super::block(title(app));
    if let Some(extra) = &app.status.extra {
        block = block.title_bottom(Line::styled(format!(" {extra} "), theme::muted()));
    }
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if app.live.events.is_empty() {
        frame.render_widget(Paragraph::new(empty_text(app)).wrap(Wrap { trim: false }), inner);
        return;
    }
    let rows = usize::from(inner.height.saturating_sub(1));
    let (range, selected) = app.live.window(rows);
    let start = range.start;
    let table_rows: Vec<Row> = app.live.events.range(range).map(|event| event_row(event)).collect();
    let table = Table::new(table_rows, event_widths())
        .header(event_header())
        .row_highlight_style(theme::selected())
        .column_spacing(1);
    let mut state = TableState::default().with_selected(selected.map(|i| i - start));
    frame.render_stateful_widget(table, inner, &mut state);
}

pub(crate) fn event_widths() -> [Constraint; 8] {
    [
        Constraint::Length(12),
        Constraint::Length(8),
        Constraint::Min(16),
        Constraint::Length(12),
        Constraint::Length(14),
        Constraint::Length(10),
        Constraint::Length(12),
        Constraint::Fill(2),
    ]
}

pub(crate) fn event_header() -> Row<'static> {
    Row::new(["Time (UTC)", "Seq", "Type", "Source", "Category", "Status", "User", "Data"]).style(theme::header())
}

pub(crate) fn event_row(event: &Event) -> Row<'static> {
    let data = serde_json::to_string(&event.data).unwrap_or_default();
    Row::new(vec![
        Cell::from(clock(event.timestamp)).style(theme::muted()),
        Cell::from(event.seq.to_string()),
        Cell::from(event.event_type.clone()),
        Cell::from(event.event_source.as_str()).style(theme::source(event.event_source)),
        Cell::from(event.event_category.as_str()),
        Cell::from(event.status.as_str()).style(theme::status(event.status)),
        Cell::from(event.user_id.clone().unwrap_or_default()),
        Cell::from(truncate(&data, 200)),
    ])
}

fn empty_text(app: &App) -> Vec<Line<'static>> {
    if !app.live.values.is_empty() {
        return vec![
            Line::raw("No new event matches the filter yet."),
            Line::styled(format!("filter: {}   (/ edits it)", app.live.values.summary()), theme::muted()),
        ];
    }
    let mut lines = vec![Line::styled("No events yet. To get events in:", theme::title()), Line::raw("")];
    match &app.origin.api_url {
        Some(url) => {
            let auth = if app.origin.auth_required { " -H 'Authorization: Bearer YOUR_KEY'" } else { "" };
            lines.push(Line::raw("  post one over HTTP:"));
            lines.push(Line::styled(
                format!(
                    "    curl -X POST {url}/api/v1/events/create -H 'Content-Type: application/json'{auth} -d '{{\"event_type\":\"user.registered\",\"data\":{{\"email\":\"a@b.c\"}}}}'"
                ),
                theme::key(),
            ));
            lines.push(Line::raw(""));
            lines.push(Line::raw("  or from the command line:"));
            lines.push(Line::styled(
                format!("    eventdeck publish --url {url} --type user.registered --data '{{\"email\":\"a@b.c\"}}'"),
                theme::key(),
            ));
        }
        None => lines.push(Line::styled(
            "  The HTTP API is not listening (see the status bar), so nothing can post to this console.",
            theme::warning(),
        )),
    }
    lines.push(Line::raw(""));
    lines.push(Line::from(vec![
        Span::raw("  or see everything move with synthetic traffic: "),
        Span::styled("eventdeck demo", theme::key()),
    ]));
    lines.push(Line::raw(""));
    lines.push(Line::styled("  ? lists the keys · 1-6 switch panes · q quits", theme::muted()));
    lines
}
