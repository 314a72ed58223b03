//! The Cluster pane: the instances sharing the store (`GET /api/v1/cluster`), each with its address,
//! version, uptime, last heartbeat and the work it holds claims on; this console's own instance is
//! marked. On one instance it shows that one.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState};

use crate::service::Cluster;
use crate::tui::action::Command;
use crate::tui::app::App;
use crate::tui::effects::Effect;
use crate::tui::theme;
use crate::tui::widgets::cursor::ListCursor;
use crate::tui::widgets::format::{age, count};

#[derive(Debug, Default)]
pub struct ClusterState {
    pub cluster: Option<Cluster>,
    pub error: Option<String>,
    pub cursor: ListCursor,
}

impl App {
    pub(crate) fn cluster_loaded(&mut self, result: Result<Cluster, crate::service::Error>) {
        match result {
            Ok(cluster) => {
                self.status.instances = Some(cluster.instances.len());
                let rows = self.list_rows();
                self.cluster.cursor.clamp(cluster.instances.len(), rows);
                self.cluster.cluster = Some(cluster);
                self.cluster.error = None;
            }
            // An older server without the cluster endpoint: the count stays unknown.
            Err(error) => {
                self.status.instances = None;
                self.cluster.error = Some(error.to_string());
            }
        }
    }

    pub(crate) fn cluster_command(&mut self, command: Command) -> Vec<Effect> {
        let rows = self.list_rows();
        let len = self.cluster.cluster.as_ref().map_or(0, |c| c.instances.len());
        let cursor = &mut self.cluster.cursor;
        match command {
            Command::Up => cursor.move_by(-1, len, rows),
            Command::Down => cursor.move_by(1, len, rows),
            Command::Top => cursor.select(0, len, rows),
            Command::Bottom => cursor.select(len.saturating_sub(1), len, rows),
            Command::Refresh => return vec![Effect::Cluster],
            _ => {}
        }
        Vec::new()
    }
}

/// `3d 4h`, `2h 5m`, `4m 10s`, `12s`.
pub fn uptime(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        s if s >= 86_400 => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m {}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

pub fn title(app: &App) -> String {
    match &app.cluster.cluster {
        Some(cluster) => {
            let n = cluster.instances.len();
            format!("Cluster · {} instance{} sharing the store", n, if n == 1 { "" } else { "s" })
        }
        None => "Cluster".to_owned(),
    }
}

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let block = super::block(title(app));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(cluster) = &app.cluster.cluster else {
        let text = match &app.cluster.error {
            Some(error) => Line::styled(format!("cannot read the cluster: {error}"), theme::error()),
            None => Line::styled("loading…", theme::muted()),
        };
        frame.render_widget(Paragraph::new(text), inner);
        return;
    };
    let this = app.status.health.as_ref().map(|h| h.instance_id.as_str());
    let rows = usize::from(inner.height.saturating_sub(1));
    let range = app.cluster.cursor.window(cluster.instances.len(), rows);
    let start = range.start;
    let table_rows: Vec<Row> = cluster.instances[range]
        .iter()
        .map(|i| {
            let me = this == Some(i.instance_id.as_str());
            let up = (app.now.as_micros() - i.started_at.as_micros()) / 1_000_000;
            Row::new(vec![
                Cell::from(if me { "●" } else { " " }).style(theme::good()),
                Cell::from(i.instance_id.clone()),
                Cell::from(i.addr.clone()),
                Cell::from(i.version.clone()),
                Cell::from(uptime(up)),
                Cell::from(format!("{} ago", age(i.last_seen, app.now))),
                Cell::from(count(i.claims.deliveries)),
                Cell::from(count(i.claims.processing)),
                Cell::from(count(i.claims.replays)),
            ])
        })
        .collect();
    let widths = [
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(21),
        Constraint::Length(9),
        Constraint::Length(8),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(7),
    ];
    let header =
        Row::new(["", "Instance", "Address", "Version", "Uptime", "Heartbeat", "Deliveries", "Processing", "Replays"])
            .style(theme::header());
    let table = Table::new(table_rows, widths).header(header).row_highlight_style(theme::selected()).column_spacing(1);
    let mut state = TableState::default().with_selected(Some(app.cluster.cursor.selected.saturating_sub(start)));
    frame.render_stateful_widget(table, inner, &mut state);
}
