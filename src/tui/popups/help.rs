//! The `?` overlay: the current pane's keys, the keys that work everywhere, dialog keys, and where
//! the console writes its log.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

use crate::tui::app::App;
use crate::tui::keymap::{self, Binding};
use crate::tui::theme;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HelpState {
    pub scroll: u16,
}

/// The overlay's text for the app's current pane.
pub fn lines(app: &App) -> Vec<Line<'static>> {
    let mut lines = vec![Line::from(Span::styled(format!("{} pane", app.pane.name()), theme::header()))];
    push_bindings(&mut lines, keymap::pane_bindings(app.pane));
    let log = match &app.origin.log_file {
        Some(path) => format!("Log file: {}", path.display()),
        None => "Log file: none (logging is off)".to_owned(),
    };
    lines.push(Line::from(Span::styled(log, theme::muted())));
    lines.push(Line::raw(""));
    lines.push(Line::from(Span::styled("Everywhere", theme::header())));
    push_bindings(&mut lines, keymap::GLOBAL);
    lines.push(Line::raw(""));
    lines.push(Line::from(Span::styled(
        "Commands (: opens the line; Tab completes, ↑/↓ earlier ones, a prefix is enough)",
        theme::header(),
    )));
    for spec in super::command::COMMANDS.iter().filter(|c| !c.help.is_empty()) {
        let usage = format!(":{} {}", spec.name, spec.args);
        if usage.chars().count() > 24 {
            lines.push(Line::from(Span::styled(format!("  {usage}"), theme::key())));
            lines.push(row("", spec.help));
        } else {
            lines.push(row(&usage, spec.help));
        }
    }
    lines.push(Line::raw(""));
    lines.push(Line::from(Span::styled("Dialogs", theme::header())));
    push_bindings(&mut lines, keymap::CONFIRM);
    push_bindings(&mut lines, keymap::REPLAY);
    for (keys, help) in keymap::FORM_HELP {
        lines.push(row(keys, &format!("filter form: {help}")));
    }
    lines
}

fn push_bindings(lines: &mut Vec<Line<'static>>, bindings: &[Binding]) {
    for binding in bindings.iter().filter(|b| !b.help.is_empty()) {
        lines.push(row(binding.label, binding.help));
    }
}

fn row(keys: &str, help: &str) -> Line<'static> {
    Line::from(vec![Span::styled(format!("  {keys:<24}"), theme::key()), Span::raw(help.to_owned())])
}

pub fn render(frame: &mut Frame, area: Rect, app: &App, state: &HelpState) {
    let lines = lines(app);
    let height = (lines.len() as u16 + 2).min(area.height);
    let popup = super::centered(area, 112, height);
    frame.render_widget(Clear, popup);
    let block = Block::default()
        .borders(Borders::ALL)
        .title(Span::styled(" Help · Esc closes ", theme::title()))
        .border_style(theme::key());
    frame.render_widget(Paragraph::new(lines).block(block).scroll((state.scroll, 0)), popup);
}
