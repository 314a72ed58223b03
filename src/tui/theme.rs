//! Colours and styles: one place, so every pane colours a status or a source the same way.

use ratatui::style::{Color, Modifier, Style};

use crate::domain::{EventSource, EventStatus};

pub fn status(status: EventStatus) -> Style {
    let color = match status {
        EventStatus::Pending => Color::Yellow,
        EventStatus::Processing => Color::Cyan,
        EventStatus::Processed => Color::Green,
        EventStatus::Failed => Color::Red,
        EventStatus::Archived => Color::DarkGray,
    };
    Style::new().fg(color)
}

pub fn source(source: EventSource) -> Style {
    let color = match source {
        EventSource::Frontend => Color::LightBlue,
        EventSource::Backend => Color::LightMagenta,
        EventSource::System => Color::Gray,
        EventSource::IotDevice => Color::LightGreen,
        EventSource::ExternalApi => Color::LightYellow,
        EventSource::Scheduled => Color::LightCyan,
    };
    Style::new().fg(color)
}

/// A boolean shown as on/off.
pub fn enabled(on: bool) -> Style {
    Style::new().fg(if on { Color::Green } else { Color::DarkGray })
}

pub fn title() -> Style {
    Style::new().add_modifier(Modifier::BOLD)
}

pub fn header() -> Style {
    Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD)
}

pub fn selected() -> Style {
    Style::new().bg(Color::DarkGray).add_modifier(Modifier::BOLD)
}

pub fn active_tab() -> Style {
    Style::new().fg(Color::Black).bg(Color::Cyan).add_modifier(Modifier::BOLD)
}

pub fn muted() -> Style {
    Style::new().fg(Color::DarkGray)
}

pub fn key() -> Style {
    Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD)
}

pub fn error() -> Style {
    Style::new().fg(Color::Red)
}

pub fn warning() -> Style {
    Style::new().fg(Color::Yellow)
}

pub fn good() -> Style {
    Style::new().fg(Color::Green)
}

pub fn status_bar() -> Style {
    Style::new().bg(Color::Rgb(30, 30, 46)).fg(Color::Gray)
}

pub fn marked() -> Style {
    Style::new().fg(Color::Magenta).add_modifier(Modifier::BOLD)
}

/// JSON in detail views.
pub fn json_key() -> Style {
    Style::new().fg(Color::Cyan)
}

pub fn json_string() -> Style {
    Style::new().fg(Color::Green)
}

pub fn json_number() -> Style {
    Style::new().fg(Color::Magenta)
}

pub fn json_literal() -> Style {
    Style::new().fg(Color::Yellow)
}
