//! The Statistics pane: the ingest rate over the last five minutes (a sparkline of the console's own
//! samples), bars by type, source and category, the status breakdown, processing and delivery rates,
//! latency percentiles, the DLQ size, and the archive's size with the oldest event the store keeps.

use std::collections::{BTreeMap, VecDeque};

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Color;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Sparkline};

use crate::domain::{EventStatus, Statistics};
use crate::tui::action::Command;
use crate::tui::app::App;
use crate::tui::effects::Effect;
use crate::tui::theme;
use crate::tui::widgets::bars;
use crate::tui::widgets::format::{count, percent, rate, signed_count};

/// Samples kept for the sparkline: one a second for five minutes.
pub const SPARK_SAMPLES: usize = 300;

#[derive(Debug, Default)]
pub struct StatsState {
    pub latest: Option<Statistics>,
    /// `ingest_rate_per_s` as each poll saw it, in hundredths, oldest first.
    pub samples: VecDeque<u64>,
    pub error: Option<String>,
}

impl StatsState {
    pub fn push(&mut self, stats: Statistics) {
        self.samples.push_back((stats.ingest_rate_per_s.max(0.0) * 100.0).round() as u64);
        while self.samples.len() > SPARK_SAMPLES {
            self.samples.pop_front();
        }
        self.latest = Some(stats);
        self.error = None;
    }
}

impl App {
    pub(crate) fn statistics_command(&mut self, command: Command) -> Vec<Effect> {
        if command == Command::Refresh && !self.polls.statistics {
            self.polls.statistics = true;
            return vec![Effect::Statistics];
        }
        Vec::new()
    }
}

pub fn title(app: &App) -> String {
    match &app.stats.latest {
        Some(stats) => format!("Statistics · {} events", signed_count(stats.total_events)),
        None => "Statistics".to_owned(),
    }
}

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let block = super::block(title(app));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(stats) = &app.stats.latest else {
        let text = match &app.stats.error {
            Some(error) => Line::styled(format!("cannot load statistics: {error}"), theme::error()),
            None => Line::styled("loading…", theme::muted()),
        };
        frame.render_widget(Paragraph::new(text), inner);
        return;
    };
    let spark_rows = (inner.height / 4).clamp(4, 12);
    let [spark_area, bars_area, figures_area] =
        Layout::vertical([Constraint::Length(spark_rows), Constraint::Min(6), Constraint::Length(8)]).areas(inner);
    render_sparkline(frame, spark_area, &app.stats.samples, stats);

    let [types, sources, categories] =
        Layout::horizontal([Constraint::Percentage(40), Constraint::Percentage(25), Constraint::Percentage(35)])
            .areas(bars_area);
    let top_types: Vec<(String, u64)> =
        stats.top_event_types.iter().map(|t| (t.name.clone(), t.count.max(0) as u64)).collect();
    render_bars(frame, types, "By type (top 10)", &top_types, Color::Cyan);
    render_bars(frame, sources, "By source", &sorted(&stats.events_by_source), Color::LightMagenta);
    render_bars(frame, categories, "By category", &sorted(&stats.events_by_category), Color::LightBlue);

    let [status, processing, delivery] = Layout::horizontal([Constraint::Ratio(1, 3); 3]).areas(figures_area);
    frame.render_widget(Paragraph::new(status_lines(stats)).block(titled("Status")), status);
    frame.render_widget(Paragraph::new(processing_lines(stats)).block(titled("Processing")), processing);
    frame.render_widget(Paragraph::new(delivery_lines(stats)).block(titled("Delivery and DLQ")), delivery);
}

fn titled(title: &str) -> Block<'static> {
    Block::default().borders(Borders::TOP).title(Span::styled(format!(" {title} "), theme::header()))
}

fn render_sparkline(frame: &mut Frame, area: Rect, samples: &VecDeque<u64>, stats: &Statistics) {
    let width = usize::from(area.width);
    let shown: Vec<u64> = samples.iter().skip(samples.len().saturating_sub(width)).copied().collect();
    let peak = shown.iter().copied().max().unwrap_or(0);
    let title = format!(
        " Ingest rate, last 5 minutes · now {} · peak {} · today {} · this week {} · this month {} ",
        rate(stats.ingest_rate_per_s),
        rate(peak as f64 / 100.0),
        signed_count(stats.events_today),
        signed_count(stats.events_this_week),
        signed_count(stats.events_this_month),
    );
    let sparkline = Sparkline::default()
        .block(titled("").title(Span::styled(title, theme::header())))
        .data(shown)
        .max(peak.max(1))
        .style(theme::good());
    frame.render_widget(sparkline, area);
}

fn render_bars(frame: &mut Frame, area: Rect, title: &str, items: &[(String, u64)], color: Color) {
    let block = titled(title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let lines = if items.is_empty() {
        vec![Line::styled("no events yet", theme::muted())]
    } else {
        let rows = usize::from(inner.height);
        bars::lines(
            &items[..items.len().min(rows)],
            inner.width.saturating_sub(1),
            ratatui::style::Style::new().fg(color),
        )
    };
    frame.render_widget(Paragraph::new(lines), inner);
}

/// Largest first, ties by name.
fn sorted(map: &BTreeMap<String, i64>) -> Vec<(String, u64)> {
    let mut items: Vec<(String, u64)> = map.iter().map(|(k, v)| (k.clone(), (*v).max(0) as u64)).collect();
    items.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    items
}

fn figure(label: &str, value: String) -> Line<'static> {
    Line::from(vec![Span::styled(format!("{label:<22}"), theme::muted()), Span::raw(value)])
}

fn status_lines(stats: &Statistics) -> Vec<Line<'static>> {
    let total = stats.total_events.max(1) as f64;
    let mut lines: Vec<Line<'static>> = EventStatus::ALL
        .iter()
        .map(|status| {
            let n = stats.events_by_status.get(status.as_str()).copied().unwrap_or(0);
            Line::from(vec![
                Span::styled(format!("{:<12}", status.as_str()), theme::status(*status)),
                Span::raw(format!("{:>12}  {:>6}", signed_count(n), percent(n as f64 * 100.0 / total))),
            ])
        })
        .collect();
    // The archive (read from its folder) and how far back the store still goes.
    let archived = theme::status(EventStatus::Archived);
    let (size, oldest) = match &stats.archive {
        Some(archive) => (
            format!("{} in {} files", bytes(archive.bytes), count(archive.files)),
            archive.oldest_event.map_or("—".to_owned(), |t| t.to_string()),
        ),
        None => ("—".to_owned(), "—".to_owned()),
    };
    lines.push(Line::from(vec![Span::styled(format!("{:<12}", "archive"), archived), Span::raw(size)]));
    lines.push(Line::from(vec![Span::styled(format!("{:<12}", "oldest kept"), theme::muted()), Span::raw(oldest)]));
    lines
}

/// A size in bytes, KiB, MiB or GiB.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

fn processing_lines(stats: &Statistics) -> Vec<Line<'static>> {
    let latency = &stats.processing_latency_ms;
    vec![
        figure("processing rate", percent(stats.processing_rate)),
        figure("error rate", percent(stats.error_rate)),
        figure("average run", format!("{:.2} ms", stats.average_processing_time)),
        figure("latency p50", format!("{:.1} ms", latency.p50)),
        figure("latency p95", format!("{:.1} ms", latency.p95)),
        figure("latency p99", format!("{:.1} ms", latency.p99)),
        figure("processors enabled", signed_count(stats.processors_enabled)),
    ]
}

fn delivery_lines(stats: &Statistics) -> Vec<Line<'static>> {
    let dlq_style = if stats.dlq_size > 0 { theme::warning() } else { theme::good() };
    vec![
        figure("delivery success", percent(stats.delivery_success_rate)),
        figure("retry rate", percent(stats.retry_rate)),
        Line::from(vec![
            Span::styled(format!("{:<22}", "DLQ size"), theme::muted()),
            Span::styled(signed_count(stats.dlq_size), dlq_style),
        ]),
        figure("subscriptions active", signed_count(stats.subscriptions_active)),
        figure("pending events", signed_count(stats.pending_events)),
        figure("failed events", signed_count(stats.failed_events)),
        figure(
            "top user",
            stats
                .top_users
                .first()
                .map_or("—".to_owned(), |u| format!("{} ({})", u.name, count(u.count.max(0) as u64))),
        ),
    ]
}
