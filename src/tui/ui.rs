//! The screen: the pane tabs on top, the current pane, the status bar at the bottom, and the open
//! popup over them. Reads `&App` only.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::app::{App, Connection};
use super::panes::{self, Pane};
use super::popups::replay::ReplayStage;
use super::popups::{self, Popup};
use super::widgets::format::{count, date_time, rate, signed_count, truncate};
use super::{OriginMode, theme};

pub fn draw(frame: &mut Frame, app: &App) {
    let area = frame.area();
    let [tabs, body, status] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(3), Constraint::Length(1)]).areas(area);
    draw_tabs(frame, tabs, app);
    match app.pane {
        Pane::Live => panes::live::render(frame, body, app),
        Pane::History => panes::history::render(frame, body, app),
        Pane::Statistics => panes::statistics::render(frame, body, app),
        Pane::Dlq => panes::dlq::render(frame, body, app),
        Pane::Processors => panes::processors::render(frame, body, app),
        Pane::Subscriptions => panes::subscriptions::render(frame, body, app),
        Pane::Streams => panes::streams::render(frame, body, app),
        Pane::Cluster => panes::cluster::render(frame, body, app),
    }
    draw_status(frame, status, app);
    match &app.popup {
        None => {}
        Some(Popup::Help(state)) => popups::help::render(frame, area, app, state),
        Some(Popup::Filter(form)) => popups::filter::render(frame, area, form),
        Some(Popup::Confirm(confirm)) => popups::confirm::render(frame, area, confirm),
        Some(Popup::Detail(detail)) => popups::detail::render(frame, area, detail),
        Some(Popup::Replay(dialog)) => popups::replay::render(frame, area, dialog),
        Some(Popup::Command(line)) => popups::command::render(frame, area, line),
        Some(Popup::Prompt(prompt)) => popups::command::render_prompt(frame, area, prompt),
    }
}

/// The count a tab shows next to its name.
fn tab_count(app: &App, pane: Pane) -> String {
    match pane {
        Pane::Live => count(app.live.events.len() as u64),
        Pane::History if app.history.loaded => count(app.history.total),
        Pane::History => "…".to_owned(),
        Pane::Statistics => app.stats.latest.as_ref().map_or("…".to_owned(), |s| signed_count(s.total_events)),
        Pane::Dlq => match (&app.stats.latest, app.dlq.loaded) {
            (_, true) => count(app.dlq.total),
            (Some(stats), false) => signed_count(stats.dlq_size),
            (None, false) => "…".to_owned(),
        },
        Pane::Processors if app.processors.loaded => count(app.processors.items.len() as u64),
        Pane::Subscriptions if app.subscriptions.loaded => count(app.subscriptions.items.len() as u64),
        Pane::Processors | Pane::Subscriptions => "…".to_owned(),
        Pane::Streams if app.streams.open.is_some() => "1".to_owned(),
        Pane::Streams if app.streams.loaded => count(app.streams.list.len() as u64),
        Pane::Streams => "…".to_owned(),
        Pane::Cluster => app.status.instances.map_or("…".to_owned(), |n| count(n as u64)),
    }
}

fn draw_tabs(frame: &mut Frame, area: Rect, app: &App) {
    let help = Line::from(vec![
        Span::styled("?", theme::key()),
        Span::raw(" help  "),
        Span::styled("q", theme::key()),
        Span::raw(" quit "),
    ]);
    let tabs = |short: bool, brand: bool| {
        let mut spans = if brand { vec![Span::styled(" eventdeck ", theme::title())] } else { Vec::new() };
        for pane in Pane::ALL {
            let name = if short { pane.short_name() } else { pane.name() };
            let text = format!(" {} {name} {} ", pane.number(), tab_count(app, pane));
            let style = if pane == app.pane { theme::active_tab() } else { Style::new() };
            spans.push(Span::styled(text, style));
            spans.push(Span::styled("│", theme::muted()));
        }
        spans.pop();
        Line::from(spans)
    };
    // Full names with the brand, then without it, then short names, whichever fits beside the help hint.
    let room = usize::from(area.width).saturating_sub(help.width());
    let spans = [tabs(false, true), tabs(false, false)]
        .into_iter()
        .find(|line| line.width() <= room)
        .unwrap_or_else(|| tabs(true, false));
    // The help hint gives way last (the help overlay itself says `?` opens it).
    let help_width = if spans.width() + help.width() > usize::from(area.width) { 0 } else { help.width() as u16 };
    let [left, right] = Layout::horizontal([Constraint::Min(10), Constraint::Length(help_width)]).areas(area);
    frame.render_widget(Paragraph::new(spans), left);
    frame.render_widget(Paragraph::new(help), right);
}

fn draw_status(frame: &mut Frame, area: Rect, app: &App) {
    let separator = || Span::styled(" │ ", theme::muted());
    let (mode, mode_color) = match app.origin.mode {
        OriginMode::Embedded => (" EMBEDDED ", Color::Green),
        OriginMode::Attached => (" ATTACHED ", Color::Cyan),
        OriginMode::Demo => (" DEMO ", Color::Magenta),
    };
    let mut spans = vec![Span::styled(mode, Style::new().fg(Color::Black).bg(mode_color))];
    spans.push(Span::raw(" "));
    match (&app.origin.api_url, &app.origin.api_error) {
        (Some(url), _) => spans.push(Span::raw(url.clone())),
        (None, Some(error)) => spans.push(Span::styled(format!("API off: {error}"), theme::error())),
        (None, None) => spans.push(Span::styled("API off", theme::warning())),
    }
    match &app.status.connection {
        Connection::Reconnecting { since, error } => {
            spans.push(separator());
            let secs = (app.now.as_micros() - since.as_micros()).max(0) / 1_000_000;
            spans.push(Span::styled(format!("reconnecting ({secs}s): {error}"), theme::warning()));
        }
        Connection::Connecting if app.origin.mode == OriginMode::Attached => {
            spans.push(separator());
            spans.push(Span::styled("connecting…", theme::warning()));
        }
        Connection::Connecting | Connection::Connected => {}
    }
    if let Some(health) = &app.status.health {
        spans.push(separator());
        let storage = format!("{}{}", health.storage.backend, if health.storage.ok { "" } else { " (down)" });
        spans.push(Span::styled(storage, if health.storage.ok { Style::new() } else { theme::error() }));
        if let Some(instances) = app.status.instances {
            spans.push(Span::raw(format!(" · {instances} instance{}", if instances == 1 { "" } else { "s" })));
        }
        spans.push(separator());
        spans.push(Span::raw(format!("NATS {}", health.nats)));
    }
    if let Some(stats) = &app.stats.latest {
        spans.push(separator());
        spans.push(Span::raw(format!("{} in", rate(stats.ingest_rate_per_s))));
        spans.push(separator());
        let style = if stats.dlq_size > 0 { theme::warning() } else { Style::new() };
        spans.push(Span::styled(format!("DLQ {}", signed_count(stats.dlq_size)), style));
    }
    if let Some(dialog) = &app.background_replay {
        spans.push(separator());
        let text = match &dialog.stage {
            ReplayStage::Running { progress: Some(p), .. } if p.total > 0 => {
                format!("replay {}%", p.done * 100 / p.total)
            }
            _ => "replay starting".to_owned(),
        };
        spans.push(Span::styled(text, theme::key()));
    }
    if let Some(export) = app.export.as_ref().filter(|e| !e.done) {
        spans.push(separator());
        let text = match export.total {
            0 => format!("export → {} starting", export.path),
            total => format!("export {}% → {}", export.written * 100 / total.max(1), export.path),
        };
        spans.push(Span::styled(text, theme::key()));
    }
    let used: usize = spans.iter().map(|s| s.width()).sum();
    let room = usize::from(area.width).saturating_sub(used + 3);
    // The newer of the last error and the last message.
    let error = app.status.last_error.as_ref();
    let message = app.status.message.as_ref().filter(|(_, at)| error.is_none_or(|(_, e)| at >= e));
    if let Some((message, _)) = message {
        spans.push(separator());
        spans.push(Span::styled(truncate(message, room), theme::good()));
    } else if let Some((error, at)) = error {
        spans.push(separator());
        let text = format!("⚠ {} {error}", &date_time(*at)[11..]);
        spans.push(Span::styled(truncate(&text, room), theme::error()));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)).style(theme::status_bar()), area);
}
