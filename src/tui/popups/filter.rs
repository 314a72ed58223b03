//! The filter form of the Live and History panes: text fields, their parsing into an [`EventFilter`]
//! (with messages that say what is accepted), and its drawing.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use crate::domain::{EventCategory, EventFilter, EventSource, EventStatus, Timestamp, TypePattern};
use crate::tui::action::TextEdit;
use crate::tui::theme;

/// A field of a filter form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FieldKey {
    Type,
    Source,
    Category,
    Status,
    User,
    Stream,
    From,
    To,
    Text,
}

impl FieldKey {
    pub fn label(self) -> &'static str {
        match self {
            FieldKey::Type => "Type pattern",
            FieldKey::Source => "Source",
            FieldKey::Category => "Category",
            FieldKey::Status => "Status",
            FieldKey::User => "User id",
            FieldKey::Stream => "Stream id",
            FieldKey::From => "From",
            FieldKey::To => "To",
            FieldKey::Text => "Text in data",
        }
    }

    pub fn hint(self) -> &'static str {
        match self {
            FieldKey::Type => "user.created, user.* (one segment), order.> (one or more)",
            FieldKey::Source => "frontend backend system iot_device external_api scheduled (a prefix is enough)",
            FieldKey::Category => "user_action page_view order payment error telemetry … (a prefix is enough)",
            FieldKey::Status => "pending processing processed failed archived",
            FieldKey::User => "exact user id",
            FieldKey::Stream => "entity_type:entity_id, e.g. user:123",
            FieldKey::From => "inclusive: 15m, 2h, 7d ago; 2026-01-02; or RFC 3339",
            FieldKey::To => "exclusive: same forms as From",
            FieldKey::Text => "case-insensitive substring of the data JSON",
        }
    }

    /// The short name used in filter summaries.
    fn short(self) -> &'static str {
        match self {
            FieldKey::Type => "type",
            FieldKey::Source => "source",
            FieldKey::Category => "category",
            FieldKey::Status => "status",
            FieldKey::User => "user",
            FieldKey::Stream => "stream",
            FieldKey::From => "from",
            FieldKey::To => "to",
            FieldKey::Text => "text",
        }
    }
}

/// The fields of the Live pane's filter.
pub const LIVE_FIELDS: &[FieldKey] =
    &[FieldKey::Type, FieldKey::Source, FieldKey::Category, FieldKey::User, FieldKey::Text];

/// The fields of the History pane's filter.
pub const HISTORY_FIELDS: &[FieldKey] = &[
    FieldKey::Type,
    FieldKey::Source,
    FieldKey::Category,
    FieldKey::Status,
    FieldKey::User,
    FieldKey::Stream,
    FieldKey::From,
    FieldKey::To,
    FieldKey::Text,
];

/// What was typed into a filter form, kept so the form opens again as it was left.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterValues(BTreeMap<FieldKey, String>);

impl FilterValues {
    pub fn get(&self, key: FieldKey) -> &str {
        self.0.get(&key).map_or("", String::as_str)
    }

    pub fn set(&mut self, key: FieldKey, value: impl Into<String>) {
        let value = value.into();
        if value.trim().is_empty() {
            self.0.remove(&key);
        } else {
            self.0.insert(key, value);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `type=user.* source=backend`, or `none`.
    pub fn summary(&self) -> String {
        if self.0.is_empty() {
            return "none".to_owned();
        }
        self.0.iter().map(|(key, value)| format!("{}={}", key.short(), value.trim())).collect::<Vec<_>>().join("  ")
    }

    /// The values with closed-vocabulary fields spelled out as parsed (`back` → `backend`).
    pub fn canonical(mut self, filter: &EventFilter) -> Self {
        if let Some(source) = filter.event_source {
            self.set(FieldKey::Source, source.as_str());
        }
        if let Some(category) = filter.event_category {
            self.set(FieldKey::Category, category.as_str());
        }
        if let Some(status) = filter.status {
            self.set(FieldKey::Status, status.as_str());
        }
        self
    }

    /// Parses every field into a filter; the error names the field and what it accepts.
    pub fn parse(&self, now: Timestamp) -> Result<EventFilter, String> {
        let mut filter = EventFilter::default();
        for (&key, value) in &self.0 {
            let text = value.trim();
            let fail = |message: String| format!("{}: {message}", key.label());
            match key {
                FieldKey::Type => {
                    filter.event_type = Some(TypePattern::parse("type", text).map_err(|e| fail(e.message))?)
                }
                FieldKey::Source => {
                    filter.event_source = Some(choice(text, EventSource::ALL, EventSource::as_str).map_err(fail)?)
                }
                FieldKey::Category => {
                    filter.event_category = Some(choice(text, EventCategory::ALL, EventCategory::as_str).map_err(fail)?)
                }
                FieldKey::Status => {
                    filter.status = Some(choice(text, EventStatus::ALL, EventStatus::as_str).map_err(fail)?)
                }
                FieldKey::User => filter.user_id = Some(text.to_owned()),
                FieldKey::Stream => filter.stream_id = Some(text.to_owned()),
                FieldKey::From => filter.start_time = parse_time(text, now).map_err(fail)?,
                FieldKey::To => filter.end_time = parse_time(text, now).map_err(fail)?,
                FieldKey::Text => filter.text = Some(text.to_owned()),
            }
        }
        if let (Some(start), Some(end)) = (filter.start_time, filter.end_time)
            && start >= end
        {
            return Err("From must be before To".to_owned());
        }
        Ok(filter)
    }
}

/// One of a closed set of names: the exact name, or a prefix only one name starts with.
fn choice<T: Copy>(text: &str, all: &[T], name: fn(T) -> &'static str) -> Result<T, String> {
    let text = text.to_ascii_lowercase();
    if let Some(exact) = all.iter().find(|v| name(**v) == text) {
        return Ok(*exact);
    }
    let matches: Vec<T> = all.iter().copied().filter(|v| name(*v).starts_with(&text)).collect();
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => Err(format!(
            "unknown value `{text}`; accepted: {}",
            all.iter().map(|v| name(*v)).collect::<Vec<_>>().join(", ")
        )),
        many => Err(format!(
            "`{text}` could be {}; type more of it",
            many.iter().map(|v| name(*v)).collect::<Vec<_>>().join(" or ")
        )),
    }
}

/// A point in time: `now`, an age (`30s`, `15m`, `2h`, `7d`, optionally with a leading `-`), a UTC
/// day (`2026-01-02`), or RFC 3339.
pub fn parse_time(text: &str, now: Timestamp) -> Result<Option<Timestamp>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if text == "now" {
        return Ok(Some(now));
    }
    let age = text.strip_prefix('-').unwrap_or(text);
    if let Some(unit) = age.chars().last().filter(|c| "smhdw".contains(*c))
        && let Ok(n) = age[..age.len() - 1].parse::<i64>()
    {
        let span = match unit {
            's' => Duration::try_seconds(n),
            'm' => Duration::try_minutes(n),
            'h' => Duration::try_hours(n),
            'd' => Duration::try_days(n),
            _ => Duration::try_weeks(n),
        };
        let then = span.and_then(|span| now.to_datetime().checked_sub_signed(span));
        return then.map(|t| Some(Timestamp::from(t))).ok_or_else(|| format!("`{text}` reaches too far back"));
    }
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let midnight = day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
        return Ok(Some(Timestamp::from(midnight)));
    }
    Timestamp::parse(text).map(Some).map_err(|_| {
        format!("`{text}` is not a time: use an age like 15m, 2h or 7d, a day like 2026-01-02, or RFC 3339")
    })
}

/// Which pane a form filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterTarget {
    Live,
    History,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormField {
    pub key: FieldKey,
    pub value: String,
    /// In characters.
    pub cursor: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterForm {
    pub target: FilterTarget,
    pub fields: Vec<FormField>,
    pub focus: usize,
    /// Why the last Enter was refused.
    pub error: Option<String>,
}

/// What an edit asks of the form's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormOutcome {
    Editing,
    Submit,
    Cancel,
}

impl FilterForm {
    pub fn new(target: FilterTarget, keys: &[FieldKey], values: &FilterValues) -> Self {
        let fields = keys
            .iter()
            .map(|&key| {
                let value = values.get(key).to_owned();
                FormField { key, cursor: value.chars().count(), value }
            })
            .collect();
        Self { target, fields, focus: 0, error: None }
    }

    pub fn values(&self) -> FilterValues {
        let mut values = FilterValues::default();
        for field in &self.fields {
            values.set(field.key, field.value.trim());
        }
        values
    }

    pub fn edit(&mut self, edit: TextEdit) -> FormOutcome {
        let count = self.fields.len().max(1);
        let Some(field) = self.fields.get_mut(self.focus) else { return FormOutcome::Cancel };
        let byte = |value: &str, chars: usize| value.char_indices().nth(chars).map_or(value.len(), |(i, _)| i);
        match edit {
            TextEdit::Char(c) => {
                let at = byte(&field.value, field.cursor);
                field.value.insert(at, c);
                field.cursor += 1;
            }
            TextEdit::Backspace if field.cursor > 0 => {
                let at = byte(&field.value, field.cursor - 1);
                field.value.remove(at);
                field.cursor -= 1;
            }
            TextEdit::Delete if field.cursor < field.value.chars().count() => {
                let at = byte(&field.value, field.cursor);
                field.value.remove(at);
            }
            TextEdit::Backspace | TextEdit::Delete => {}
            TextEdit::Left => field.cursor = field.cursor.saturating_sub(1),
            TextEdit::Right => field.cursor = (field.cursor + 1).min(field.value.chars().count()),
            TextEdit::Home => field.cursor = 0,
            TextEdit::End => field.cursor = field.value.chars().count(),
            TextEdit::Clear => {
                field.value.clear();
                field.cursor = 0;
            }
            TextEdit::NextField | TextEdit::Complete | TextEdit::Later => self.focus = (self.focus + 1) % count,
            TextEdit::PrevField | TextEdit::Earlier => self.focus = (self.focus + count - 1) % count,
            TextEdit::Submit => return FormOutcome::Submit,
            TextEdit::Cancel => return FormOutcome::Cancel,
        }
        FormOutcome::Editing
    }
}

pub fn render(frame: &mut Frame, area: Rect, form: &FilterForm) {
    let title = match form.target {
        FilterTarget::Live => " Live filter ",
        FilterTarget::History => " History filter ",
    };
    let height = (form.fields.len() as u16 * 2 + 6).min(area.height);
    let popup = super::centered(area, 100, height);
    frame.render_widget(Clear, popup);
    let block = Block::default().borders(Borders::ALL).title(Span::styled(title, theme::title()));
    let inner = block.inner(popup);
    frame.render_widget(block, popup);

    let mut lines = Vec::new();
    for (i, field) in form.fields.iter().enumerate() {
        let focused = i == form.focus;
        let marker = if focused { "▶ " } else { "  " };
        let mut value = field.value.clone();
        if focused {
            let at = value.char_indices().nth(field.cursor).map_or(value.len(), |(i, _)| i);
            value.insert(at, '▏');
        }
        let label_style = if focused { theme::key() } else { theme::title() };
        lines.push(Line::from(vec![
            Span::raw(marker),
            Span::styled(format!("{:<13}", field.key.label()), label_style),
            Span::raw(value),
        ]));
        lines.push(Line::from(Span::styled(format!("{:15}{}", "", field.key.hint()), theme::muted())));
    }
    lines.push(Line::raw(""));
    match &form.error {
        Some(error) => lines.push(Line::from(Span::styled(error.clone(), theme::error()))),
        None => lines.push(Line::from(Span::styled(
            "Enter apply · Tab/↑↓ field · Ctrl-U clear field · Esc cancel · empty fields match everything",
            theme::muted(),
        ))),
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        Timestamp::parse("2026-03-10T12:00:00Z").unwrap()
    }

    #[test]
    fn times_accept_ages_days_and_rfc3339() {
        assert_eq!(parse_time("", now()).unwrap(), None);
        assert_eq!(parse_time("15m", now()).unwrap().unwrap().to_string(), "2026-03-10T11:45:00.000000Z");
        assert_eq!(parse_time("-2h", now()).unwrap().unwrap().to_string(), "2026-03-10T10:00:00.000000Z");
        assert_eq!(parse_time("2026-01-02", now()).unwrap().unwrap().to_string(), "2026-01-02T00:00:00.000000Z");
        assert_eq!(
            parse_time("2026-01-02T03:04:05Z", now()).unwrap().unwrap().to_string(),
            "2026-01-02T03:04:05.000000Z"
        );
        assert!(parse_time("yesterday", now()).unwrap_err().contains("is not a time"));
    }

    #[test]
    fn values_parse_into_a_filter_with_prefixes_for_vocabularies() {
        let mut values = FilterValues::default();
        values.set(FieldKey::Type, "order.*");
        values.set(FieldKey::Source, "back");
        values.set(FieldKey::Status, "failed");
        values.set(FieldKey::From, "1h");
        let filter = values.parse(now()).unwrap();
        assert_eq!(filter.event_type.unwrap().as_str(), "order.*");
        assert_eq!(filter.event_source, Some(EventSource::Backend));
        assert_eq!(filter.status, Some(EventStatus::Failed));
        assert_eq!(filter.start_time.unwrap().to_string(), "2026-03-10T11:00:00.000000Z");
        assert_eq!(values.summary(), "type=order.*  source=back  status=failed  from=1h");
    }

    #[test]
    fn bad_values_name_the_field_and_the_choices() {
        let mut values = FilterValues::default();
        values.set(FieldKey::Category, "p");
        let err = values.parse(now()).unwrap_err();
        assert!(err.starts_with("Category: `p` could be page_view or payment or performance"), "{err}");
        values.set(FieldKey::Category, "nope");
        assert!(values.parse(now()).unwrap_err().contains("accepted: user_action, page_view"));
        let mut values = FilterValues::default();
        values.set(FieldKey::Type, "user..x");
        assert!(values.parse(now()).unwrap_err().starts_with("Type pattern: "));
        let mut values = FilterValues::default();
        values.set(FieldKey::From, "1h");
        values.set(FieldKey::To, "2h");
        assert_eq!(values.parse(now()).unwrap_err(), "From must be before To");
    }

    #[test]
    fn editing_moves_the_cursor_and_focus() {
        let mut form = FilterForm::new(FilterTarget::Live, LIVE_FIELDS, &FilterValues::default());
        for c in "usr".chars() {
            form.edit(TextEdit::Char(c));
        }
        form.edit(TextEdit::Left);
        form.edit(TextEdit::Left);
        form.edit(TextEdit::Char('e'));
        assert_eq!(form.fields[0].value, "uesr");
        form.edit(TextEdit::Backspace);
        form.edit(TextEdit::Right);
        form.edit(TextEdit::Delete);
        assert_eq!(form.fields[0].value, "us");
        form.edit(TextEdit::PrevField);
        assert_eq!(form.focus, LIVE_FIELDS.len() - 1);
        form.edit(TextEdit::NextField);
        form.edit(TextEdit::Clear);
        assert_eq!(form.fields[0].value, "");
        assert_eq!(form.edit(TextEdit::Submit), FormOutcome::Submit);
    }
}
