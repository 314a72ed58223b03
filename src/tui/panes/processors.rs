//! The Processors pane: each processor's name, type, state, priority, filters, totals and average
//! run time; toggling one on or off and its details.

use std::sync::Arc;

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState};

use crate::domain::{Processor, ProcessorFilters};
use crate::service::Error;
use crate::tui::action::Command;
use crate::tui::app::App;
use crate::tui::effects::Effect;
use crate::tui::popups::{Detail, DetailKey, Popup};
use crate::tui::theme;
use crate::tui::widgets::cursor::ListCursor;
use crate::tui::widgets::format::{count, signed_count};

#[derive(Debug, Default)]
pub struct ProcessorsState {
    /// Highest priority first, as the service lists them.
    pub items: Vec<Arc<Processor>>,
    pub cursor: ListCursor,
    pub loaded: bool,
    pub error: Option<String>,
}

impl App {
    pub(crate) fn processors_loaded(&mut self, result: Result<Vec<Arc<Processor>>, Error>) {
        match result {
            Ok(items) => {
                self.processors.items = items;
                self.processors.loaded = true;
                self.processors.error = None;
                let rows = self.list_rows();
                self.processors.cursor.clamp(self.processors.items.len(), rows);
            }
            Err(error) => {
                self.processors.error = Some(error.to_string());
                if self.pane == crate::tui::panes::Pane::Processors {
                    self.error("processors", error);
                }
            }
        }
    }

    pub(crate) fn processor_toggled(&mut self, result: Result<Arc<Processor>, Error>) {
        match result {
            Ok(processor) => {
                let state = if processor.enabled { "on" } else { "off" };
                self.notify(format!("processor {} is {state}", processor.processor_name));
                if let Some(slot) = self.processors.items.iter_mut().find(|p| p.processor_id == processor.processor_id)
                {
                    *slot = processor;
                }
            }
            Err(error) => self.error("toggle processor", error),
        }
    }

    pub(crate) fn processors_command(&mut self, command: Command) -> Vec<Effect> {
        let rows = self.list_rows();
        let len = self.processors.items.len();
        if self.processors.cursor.navigate(command, len, rows) {
            return Vec::new();
        }
        match command {
            Command::Refresh => return self.poll_processors(),
            Command::Toggle => {
                if let Some(processor) = self.processors.items.get(self.processors.cursor.selected) {
                    return vec![Effect::ToggleProcessor { id: processor.processor_id, enabled: !processor.enabled }];
                }
            }
            Command::Open => {
                if let Some(processor) = self.processors.items.get(self.processors.cursor.selected) {
                    let title =
                        format!("Processor {} · {}", processor.processor_name, processor.processor_type.as_str());
                    let key = DetailKey::Processor(processor.processor_id);
                    self.popup = Some(Popup::Detail(Detail::json(title, key, processor.as_ref())));
                }
            }
            _ => {}
        }
        Vec::new()
    }
}

/// `type=order.* source=backend`, or `all events`.
pub fn filters_text(filters: &ProcessorFilters) -> String {
    let mut parts = Vec::new();
    if let Some(pattern) = &filters.event_type {
        parts.push(format!("type={pattern}"));
    }
    if let Some(source) = filters.event_source {
        parts.push(format!("source={source}"));
    }
    if let Some(category) = filters.event_category {
        parts.push(format!("category={category}"));
    }
    if parts.is_empty() { "all events".to_owned() } else { parts.join(" ") }
}

pub fn title(app: &App) -> String {
    let items = &app.processors.items;
    let enabled = items.iter().filter(|p| p.enabled).count() as u64;
    format!("Processors · {} ({} on)", count(items.len() as u64), count(enabled))
}

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let state = &app.processors;
    let block = super::block(title(app));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if state.items.is_empty() {
        let text = match (&state.error, state.loaded) {
            (Some(error), _) => Line::styled(format!("cannot load processors: {error}"), theme::error()),
            (None, false) => Line::styled("loading…", theme::muted()),
            (None, true) => Line::raw(
                "No processors yet. Register one with POST /api/v1/events/processors (see the README), or run `eventdeck demo`.",
            ),
        };
        frame.render_widget(Paragraph::new(text), inner);
        return;
    }
    let rows = usize::from(inner.height.saturating_sub(1));
    let range = state.cursor.window(state.items.len(), rows);
    let start = range.start;
    let table_rows: Vec<Row> = state.items[range]
        .iter()
        .map(|p| {
            Row::new(vec![
                Cell::from(p.processor_name.clone()),
                Cell::from(p.processor_type.as_str()),
                Cell::from(if p.enabled { "on" } else { "off" }).style(theme::enabled(p.enabled)),
                Cell::from(p.priority.to_string()),
                Cell::from(filters_text(&p.filters)),
                Cell::from(signed_count(p.processed_count)),
                Cell::from(signed_count(p.failed_count)).style(if p.failed_count > 0 {
                    theme::error()
                } else {
                    ratatui::style::Style::new()
                }),
                Cell::from(format!("{:.2}", p.avg_duration_ms)),
            ])
        })
        .collect();
    let widths = [
        Constraint::Min(16),
        Constraint::Length(10),
        Constraint::Length(4),
        Constraint::Length(8),
        Constraint::Fill(2),
        Constraint::Length(11),
        Constraint::Length(9),
        Constraint::Length(8),
    ];
    let header =
        Row::new(["Name", "Type", "On", "Priority", "Filters", "Processed", "Failed", "Avg ms"]).style(theme::header());
    let table = Table::new(table_rows, widths).header(header).row_highlight_style(theme::selected()).column_spacing(1);
    let mut table_state = TableState::default().with_selected(Some(state.cursor.selected.saturating_sub(start)));
    frame.render_stateful_widget(table, inner, &mut table_state);
}
