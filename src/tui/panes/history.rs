//! The History pane: a filter form, a paged table of stored events with the total, the detail view,
//! and replaying what the filter selects.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, Table, TableState};

use crate::domain::archive::ArchiveReport;
use crate::domain::{Event, EventFilter, EventPage, EventQuery, EventStatus, Order, Timestamp};
use crate::service::Error;
use crate::tui::action::Command;
use crate::tui::app::App;
use crate::tui::effects::Effect;
use crate::tui::popups::filter::{FilterForm, FilterTarget, FilterValues, HISTORY_FIELDS};
use crate::tui::popups::replay::{self, ReplayPlan, TargetChoice};
use crate::tui::popups::{Confirm, PendingOp, Popup, ReplayDialog};
use crate::tui::theme;
use crate::tui::widgets::cursor::ListCursor;
use crate::tui::widgets::format::count;

/// Events per page.
pub const PAGE_SIZE: u32 = 100;

#[derive(Debug, Default)]
pub struct HistoryState {
    pub values: FilterValues,
    pub filter: EventFilter,
    pub events: Vec<Event>,
    pub total: u64,
    pub offset: u64,
    pub cursor: ListCursor,
    pub loading: bool,
    /// A page has been loaded at least once.
    pub loaded: bool,
    /// The query whose answer is awaited; older answers are dropped.
    pub request: u64,
    pub error: Option<String>,
}

impl App {
    pub(crate) fn history_query(&mut self) -> Vec<Effect> {
        let request = self.request_id();
        self.history.request = request;
        self.history.loading = true;
        let query = EventQuery {
            filter: self.history.filter.clone(),
            limit: PAGE_SIZE,
            offset: self.history.offset,
            order: Order::Desc,
        };
        vec![Effect::Query { request, query }]
    }

    pub(crate) fn history_loaded(&mut self, request: u64, result: Result<EventPage, Error>) -> Vec<Effect> {
        if request != self.history.request {
            return Vec::new();
        }
        self.history.loading = false;
        match result {
            Ok(page) => {
                self.history.loaded = true;
                self.history.error = None;
                self.history.events = page.events;
                self.history.total = page.total;
                let rows = self.list_rows();
                self.history.cursor.clamp(self.history.events.len(), rows);
            }
            Err(error) => {
                self.history.error = Some(error.to_string());
                self.error("history", error);
            }
        }
        Vec::new()
    }

    pub(crate) fn history_command(&mut self, command: Command) -> Vec<Effect> {
        let rows = self.list_rows();
        let len = self.history.events.len();
        if self.history.cursor.navigate(command, len, rows) {
            return Vec::new();
        }
        match command {
            Command::Filter => {
                let form = FilterForm::new(FilterTarget::History, HISTORY_FIELDS, &self.history.values);
                self.popup = Some(Popup::Filter(form));
            }
            Command::NextPage if self.history.offset + (len as u64) < self.history.total => {
                self.history.offset += u64::from(PAGE_SIZE);
                self.history.cursor = ListCursor::default();
                return self.history_query();
            }
            Command::PrevPage if self.history.offset > 0 => {
                self.history.offset = self.history.offset.saturating_sub(u64::from(PAGE_SIZE));
                self.history.cursor = ListCursor::default();
                return self.history_query();
            }
            Command::Refresh => return self.history_query(),
            Command::Open => {
                if let Some(event) = self.history.events.get(self.history.cursor.selected).cloned() {
                    return self.open_event(&event);
                }
            }
            Command::Replay => return self.open_replay(),
            Command::Archive => {
                // The archive takes everything before a time: the end of the filter's range, or now.
                let now = Timestamp::now();
                let before = self.history.filter.end_time.map_or(now, |end| end.min(now));
                self.notify("counting the events to archive…");
                return vec![Effect::CountArchivable(before)];
            }
            _ => {}
        }
        Vec::new()
    }

    pub(crate) fn apply_history_filter(&mut self, values: FilterValues, filter: EventFilter) -> Vec<Effect> {
        self.history.values = values;
        self.history.filter = filter;
        self.history.offset = 0;
        self.history.cursor = ListCursor::default();
        self.history_query()
    }

    /// Asks before archiving, with the count.
    pub(crate) fn archive_counted(&mut self, result: Result<(Timestamp, u64), Error>) -> Vec<Effect> {
        match result {
            Ok((_, 0)) => {
                self.notify("nothing to archive: no processed or failed event before the end of the filter's range")
            }
            Ok((before, n)) => {
                let plural = if n == 1 { "" } else { "s" };
                self.popup = Some(Popup::Confirm(Confirm {
                    title: format!("Archive {} event{plural}", count(n)),
                    message: format!(
                        "Write the {} processed or failed event{plural} before {before} to the archive (JSON Lines \
                         under [archive] dir) and mark them archived? They stay in the store.",
                        count(n)
                    ),
                    op: PendingOp::Archive { before, count: n },
                }));
            }
            Err(error) => self.error("archive", error),
        }
        Vec::new()
    }

    pub(crate) fn archived(&mut self, result: Result<ArchiveReport, Error>) -> Vec<Effect> {
        match result {
            Ok(report) => {
                let files = report.files.len();
                self.notify(format!(
                    "archived {} events into {files} file{}",
                    count(report.archived),
                    if files == 1 { "" } else { "s" }
                ));
                self.history_query()
            }
            Err(error) => {
                self.error("archive", error);
                Vec::new()
            }
        }
    }

    /// The replay dialog for the current filter, starting with its dry run.
    pub(crate) fn open_replay(&mut self) -> Vec<Effect> {
        let plan = replay::plan(&self.history.filter);
        let mut selection = if self.history.values.is_empty() {
            "every stored event".to_owned()
        } else {
            self.history.values.summary()
        };
        if matches!(plan, ReplayPlan::ByIds(_)) {
            selection.push_str(&format!(
                " (category, status, user, stream with time, and text select by event id: at most {})",
                count(replay::MAX_IDS)
            ));
        }
        self.popup = Some(Popup::Replay(ReplayDialog::new(selection, self.replay_targets())));
        vec![Effect::PrepareReplay(plan)]
    }

    fn replay_targets(&self) -> Vec<TargetChoice> {
        let mut targets =
            vec![TargetChoice { label: "every matching subscription and processor".to_owned(), target: None }];
        targets.extend(self.subscriptions.items.iter().map(|s| TargetChoice {
            label: format!("subscription {}", s.subscriber_name),
            target: Some(crate::domain::ReplayTarget::Subscription { subscription_id: s.subscription_id }),
        }));
        targets.extend(self.processors.items.iter().map(|p| TargetChoice {
            label: format!("processor {}", p.processor_name),
            target: Some(crate::domain::ReplayTarget::Processor { processor_id: p.processor_id }),
        }));
        targets
    }
}

pub fn title(app: &App) -> String {
    let history = &app.history;
    if !history.loaded {
        return "History".to_owned();
    }
    let shown = history.events.len() as u64;
    let range = if shown == 0 {
        "none shown".to_owned()
    } else {
        format!("{}–{}", count(history.offset + 1), count(history.offset + shown))
    };
    format!("History · {} total · {range}", count(history.total))
}

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let history = &app.history;
    let block = super::block(title(app));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [filter_area, table_area] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(inner);
    let mut filter_line = vec![
        Span::styled("filter ", theme::header()),
        Span::raw(history.values.summary()),
        Span::styled("   / edit · n/p page · Enter details · R replay · A archive", theme::muted()),
    ];
    if history.loading {
        filter_line.push(Span::styled("   loading…", theme::warning()));
    }
    frame.render_widget(Paragraph::new(Line::from(filter_line)), filter_area);

    if let Some(error) = &history.error {
        frame.render_widget(Paragraph::new(Line::styled(format!("cannot query: {error}"), theme::error())), table_area);
        return;
    }
    if history.loaded && history.events.is_empty() {
        frame.render_widget(Paragraph::new("No stored event matches this filter."), table_area);
        return;
    }
    let rows = usize::from(table_area.height.saturating_sub(1));
    let range = history.cursor.window(history.events.len(), rows);
    let start = range.start;
    // Archived events in their own colour, the whole row: they are the ones already in the archive.
    let table_rows: Vec<Row> = history.events[range]
        .iter()
        .map(|event| match event.status {
            EventStatus::Archived => super::live::event_row(event).style(theme::status(EventStatus::Archived)),
            _ => super::live::event_row(event),
        })
        .collect();
    let table = Table::new(table_rows, super::live::event_widths())
        .header(super::live::event_header())
        .row_highlight_style(theme::selected())
        .column_spacing(1);
    let mut state = TableState::default().with_selected(Some(history.cursor.selected.saturating_sub(start)));
    frame.render_stateful_widget(table, table_area, &mut state);
}
