//! The detail view: one event, dead letter, processor or subscription as pretty, coloured,
//! scrollable JSON.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};
use serde::Serialize;

use crate::domain::{DlqId, EventId, ProcessorId, SubscriptionId};
use crate::tui::theme;

/// What a detail view shows, so an answer that arrives late finds its view (or none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetailKey {
    Event(EventId),
    DeadLetter(DlqId),
    Processor(ProcessorId),
    Subscription(SubscriptionId),
    /// A DLQ group (shown whole, nothing to load).
    Group,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DetailBody {
    Loading,
    /// Pretty JSON, one entry per line.
    Json(Vec<String>),
    Error(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Detail {
    pub title: String,
    pub key: DetailKey,
    pub body: DetailBody,
    /// The first line shown.
    pub scroll: usize,
}

impl Detail {
    pub fn loading(title: impl Into<String>, key: DetailKey) -> Self {
        Self { title: title.into(), key, body: DetailBody::Loading, scroll: 0 }
    }

    pub fn json(title: impl Into<String>, key: DetailKey, value: &impl Serialize) -> Self {
        let mut detail = Self::loading(title, key);
        detail.set_json(value);
        detail
    }

    /// Shows `value` as pretty JSON, fields in their declared order.
    pub fn set_json(&mut self, value: &impl Serialize) {
        self.body = DetailBody::Json(pretty(value).lines().map(str::to_owned).collect());
    }

    /// Shows one JSON object made of named sections, each already pretty JSON, in the order given.
    pub fn set_sections(&mut self, sections: &[(&str, String)]) {
        let mut lines = vec!["{".to_owned()];
        for (i, (name, text)) in sections.iter().enumerate() {
            let comma = if i + 1 < sections.len() { "," } else { "" };
            let mut section = text.lines().peekable();
            let first = section.next().unwrap_or("null");
            if section.peek().is_none() {
                lines.push(format!("  \"{name}\": {first}{comma}"));
                continue;
            }
            lines.push(format!("  \"{name}\": {first}"));
            while let Some(line) = section.next() {
                let end = if section.peek().is_none() { comma } else { "" };
                lines.push(format!("  {line}{end}"));
            }
        }
        lines.push("}".to_owned());
        self.body = DetailBody::Json(lines);
    }

    pub fn line_count(&self) -> usize {
        match &self.body {
            DetailBody::Json(lines) => lines.len(),
            _ => 1,
        }
    }

    /// Scrolls by `delta` lines, never past the last screenful of `rows`.
    pub fn scroll_by(&mut self, delta: isize, rows: usize) {
        let max = self.line_count().saturating_sub(rows.max(1));
        self.scroll = self.scroll.saturating_add_signed(delta).min(max);
    }
}

/// Pretty JSON of `value`, or why it cannot be shown.
pub fn pretty(value: &impl Serialize) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("\"cannot show this as JSON: {e}\""))
}

/// A section's JSON: the value, or `{"unavailable": why}` when the call failed.
pub fn section<T: Serialize>(result: &Result<T, crate::service::Error>) -> String {
    match result {
        Ok(value) => pretty(value),
        Err(error) => pretty(&serde_json::json!({ "unavailable": error.to_string() })),
    }
}

/// One line of pretty JSON with keys, strings, numbers and literals coloured.
fn highlight(line: &str) -> Line<'static> {
    let indent = line.len() - line.trim_start().len();
    let rest = &line[indent..];
    let mut spans = vec![Span::raw(line[..indent].to_owned())];
    let value = match rest.strip_prefix('"').and_then(|r| r.find("\": ").map(|end| end + 1)) {
        Some(key_end) => {
            spans.push(Span::styled(rest[..=key_end].to_owned(), theme::json_key()));
            spans.push(Span::raw(": "));
            &rest[key_end + 3..]
        }
        None => rest,
    };
    let style = match value.chars().next() {
        Some('"') => theme::json_string(),
        Some(c) if c == '-' || c.is_ascii_digit() => theme::json_number(),
        Some('t' | 'f' | 'n') => theme::json_literal(),
        _ => ratatui::style::Style::new(),
    };
    spans.push(Span::styled(value.to_owned(), style));
    Line::from(spans)
}

/// Rows of text a detail view shows in `area` (inside its border).
pub fn rows(area: Rect) -> usize {
    usize::from(area.height.saturating_sub(4)).max(1)
}

pub fn render(frame: &mut Frame, area: Rect, detail: &Detail) {
    let popup = super::centered(area, area.width.saturating_sub(6), area.height.saturating_sub(2));
    frame.render_widget(Clear, popup);
    let position = match &detail.body {
        DetailBody::Json(lines) => format!(" {}/{} ", (detail.scroll + 1).min(lines.len()), lines.len()),
        _ => String::new(),
    };
    let block = Block::default()
        .borders(Borders::ALL)
        .title(Span::styled(format!(" {} ", detail.title), theme::title()))
        .title_bottom(Line::from(vec![
            Span::styled(" ↑↓ PgUp PgDn", theme::key()),
            Span::raw(" scroll  "),
            Span::styled("Esc", theme::key()),
            Span::raw(" close "),
            Span::styled(position, theme::muted()),
        ]));
    let inner = block.inner(popup);
    frame.render_widget(block, popup);
    let lines: Vec<Line> = match &detail.body {
        DetailBody::Loading => vec![Line::styled("loading…", theme::muted())],
        DetailBody::Error(error) => vec![Line::styled(error.clone(), theme::error())],
        DetailBody::Json(lines) => {
            lines.iter().skip(detail.scroll).take(usize::from(inner.height)).map(|l| highlight(l)).collect()
        }
    };
    frame.render_widget(Paragraph::new(lines), inner);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn scrolling_stops_at_the_last_screen() {
        let value = json!({"a": 1, "b": [1, 2, 3, 4, 5, 6, 7, 8]});
        let mut detail = Detail::json("x", DetailKey::Event(EventId::new_v7()), &value);
        assert_eq!(detail.line_count(), 13);
        detail.scroll_by(100, 10);
        assert_eq!(detail.scroll, 3);
        detail.scroll_by(-1, 10);
        assert_eq!(detail.scroll, 2);
        detail.scroll_by(-100, 10);
        assert_eq!(detail.scroll, 0);
    }

    #[test]
    fn sections_keep_their_order_and_nest() {
        let mut detail = Detail::loading("x", DetailKey::Event(EventId::new_v7()));
        detail.set_sections(&[("zeta", pretty(&json!({"a": 1}))), ("alpha", pretty(&json!([])))]);
        let DetailBody::Json(lines) = &detail.body else { panic!("json expected") };
        let text = lines.join("\n");
        assert_eq!(text, "{\n  \"zeta\": {\n    \"a\": 1\n  },\n  \"alpha\": []\n}");
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["zeta"]["a"], 1);
    }

    #[test]
    fn keys_and_values_are_split_for_colour() {
        let line = highlight("  \"event_type\": \"user.created\",");
        let texts: Vec<&str> = line.spans.iter().map(|s| s.content.as_ref()).collect();
        assert_eq!(texts, ["  ", "\"event_type\"", ": ", "\"user.created\","]);
        assert_eq!(line.spans[3].style, theme::json_string());
    }
}
