//! Type patterns (NATS style) and the event filter shared by history queries and the live stream.

use std::fmt;

use super::error::FieldError;
use super::event::{Event, EventCategory, EventSource, EventStatus};
use super::time::Timestamp;

/// One segment of a type pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    /// `*`: exactly one segment.
    Any,
}

/// An event-type pattern: `user.created` matches itself, `user.*` one more segment, `user.>` one or
/// more; `*` or `>` alone match everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypePattern {
    raw: String,
    segments: Vec<Segment>,
    /// Ends in `>`: one or more further segments.
    open_tail: bool,
}

impl TypePattern {
    pub fn parse(field: &str, text: &str) -> Result<Self, FieldError> {
        let text = text.trim();
        if text == "*" || text == ">" {
            return Ok(Self { raw: text.to_owned(), segments: Vec::new(), open_tail: true });
        }
        let invalid = || {
            FieldError::new(
                field,
                format!(
                    "`{text}` is not a type pattern: use dot-separated segments where `*` stands for one segment and a final `>` for one or more, e.g. \"user.*\" or \"order.>\""
                ),
            )
        };
        let parts: Vec<&str> = text.split('.').collect();
        let mut segments = Vec::with_capacity(parts.len());
        let mut open_tail = false;
        for (i, part) in parts.iter().enumerate() {
            match *part {
                ">" if i == parts.len() - 1 && i > 0 => open_tail = true,
                "*" => segments.push(Segment::Any),
                literal => {
                    let ok = !literal.is_empty()
                        && literal.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-:".contains(&b));
                    if !ok {
                        return Err(invalid());
                    }
                    segments.push(Segment::Literal(literal.to_owned()));
                }
            }
        }
        Ok(Self { raw: text.to_owned(), segments, open_tail })
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    pub fn open_tail(&self) -> bool {
        self.open_tail
    }

    /// True when the pattern matches every type.
    pub fn matches_all(&self) -> bool {
        self.segments.is_empty() && self.open_tail
    }

    /// True when the pattern has no wildcard: it names one type.
    pub fn exact(&self) -> Option<&str> {
        let literal = !self.open_tail && self.segments.iter().all(|s| matches!(s, Segment::Literal(_)));
        literal.then_some(self.raw.as_str())
    }

    /// The literal text every matching type starts with (up to the first wildcard), for index ranges.
    pub fn literal_prefix(&self) -> String {
        let mut prefix = String::new();
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => {
                    prefix.push_str(text);
                    prefix.push('.');
                }
                Segment::Any => return prefix,
            }
        }
        if !self.open_tail {
            prefix.pop();
        }
        prefix
    }

    pub fn matches(&self, event_type: &str) -> bool {
        if self.matches_all() {
            return true;
        }
        let mut parts = event_type.split('.');
        for segment in &self.segments {
            match (segment, parts.next()) {
                (Segment::Literal(want), Some(got)) if want == got => {}
                (Segment::Any, Some(got)) if !got.is_empty() => {}
                _ => return false,
            }
        }
        let rest = parts.count();
        if self.open_tail { rest >= 1 } else { rest == 0 }
    }
}

impl fmt::Display for TypePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// On the wire and in storage a pattern is its text.
impl utoipa::PartialSchema for TypePattern {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        super::schema::string(
            None,
            "An event type pattern: `user.created` matches itself, `user.*` one more segment, `user.>` one or more, `*` or `>` everything",
        )
    }
}

impl utoipa::ToSchema for TypePattern {}

impl serde::Serialize for TypePattern {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.raw)
    }
}

impl<'de> serde::Deserialize<'de> for TypePattern {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse("event_type", &text).map_err(|e| serde::de::Error::custom(e.message))
    }
}

/// Which events a query or a live subscription wants. Every field is optional; set fields combine
/// with AND.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    pub event_type: Option<TypePattern>,
    pub event_source: Option<EventSource>,
    pub event_category: Option<EventCategory>,
    pub status: Option<EventStatus>,
    pub user_id: Option<String>,
    pub stream_id: Option<String>,
    /// Absent means every tenant.
    pub tenant_id: Option<String>,
    pub correlation_id: Option<String>,
    /// Inclusive, on the event's `timestamp`.
    pub start_time: Option<Timestamp>,
    /// Exclusive, on the event's `timestamp`.
    pub end_time: Option<Timestamp>,
    /// Substring of the data JSON, ignoring ASCII case.
    pub text: Option<String>,
}

impl EventFilter {
    pub fn matches(&self, event: &Event) -> bool {
        fn same<T: PartialEq>(want: &Option<T>, got: &T) -> bool {
            want.as_ref().is_none_or(|w| w == got)
        }
        fn same_opt(want: &Option<String>, got: &Option<String>) -> bool {
            want.as_ref().is_none_or(|w| got.as_ref() == Some(w))
        }
        self.event_type.as_ref().is_none_or(|p| p.matches(&event.event_type))
            && same(&self.event_source, &event.event_source)
            && same(&self.event_category, &event.event_category)
            && same(&self.status, &event.status)
            && same_opt(&self.user_id, &event.user_id)
            && same_opt(&self.stream_id, &event.stream_id)
            && same_opt(&self.tenant_id, &event.tenant_id)
            && same_opt(&self.correlation_id, &event.correlation_id)
            && self.start_time.is_none_or(|t| event.timestamp >= t)
            && self.end_time.is_none_or(|t| event.timestamp < t)
            && self.text.as_ref().is_none_or(|needle| {
                // ASCII case folding, as the store's SQL `lower()` does.
                let data = serde_json::to_string(&event.data).unwrap_or_default().to_ascii_lowercase();
                data.contains(&needle.to_ascii_lowercase())
            })
    }
}

/// Sort order of a query: by `timestamp`, ties by `seq`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Order {
    #[default]
    Desc,
    Asc,
}

/// A page of history.
#[derive(Debug, Clone, PartialEq)]
pub struct EventQuery {
    pub filter: EventFilter,
    pub limit: u32,
    pub offset: u64,
    pub order: Order,
}

impl EventQuery {
    pub const DEFAULT_LIMIT: u32 = 100;
    pub const MAX_LIMIT: u32 = 1000;
}

impl Default for EventQuery {
    fn default() -> Self {
        Self { filter: EventFilter::default(), limit: Self::DEFAULT_LIMIT, offset: 0, order: Order::Desc }
    }
}

/// One page of query results.
#[derive(Debug, Clone, PartialEq)]
pub struct EventPage {
    pub events: Vec<Event>,
    pub total: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> TypePattern {
        TypePattern::parse("event_type", text).unwrap()
    }

    #[test]
    fn exact_pattern_matches_itself_only() {
        let p = pattern("user.created");
        assert!(p.matches("user.created"));
        assert!(!p.matches("user.created.v2"));
        assert!(!p.matches("user"));
        assert_eq!(p.exact(), Some("user.created"));
        assert_eq!(p.literal_prefix(), "user.created");
    }

    #[test]
    fn star_matches_exactly_one_segment() {
        let p = pattern("user.*");
        assert!(p.matches("user.created"));
        assert!(!p.matches("user.a.b"));
        assert!(!p.matches("user"));
        assert!(!p.matches("users.created"));
        assert_eq!(p.literal_prefix(), "user.");
        let middle = pattern("*.created");
        assert!(middle.matches("order.created"));
        assert!(!middle.matches("order.x.created"));
        assert_eq!(middle.literal_prefix(), "");
    }

    #[test]
    fn tail_matches_one_or_more_segments() {
        let p = pattern("user.>");
        assert!(p.matches("user.a"));
        assert!(p.matches("user.a.b"));
        assert!(!p.matches("user"));
        assert_eq!(p.literal_prefix(), "user.");
    }

    #[test]
    fn lone_wildcards_match_everything() {
        for text in ["*", ">"] {
            let p = pattern(text);
            assert!(p.matches_all());
            assert!(p.matches("a"));
            assert!(p.matches("a.b.c"));
        }
    }

    #[test]
    fn malformed_patterns_are_rejected_with_the_field() {
        for bad in ["", "user..x", ">.user", "user.>.x", "us*er", "user created"] {
            let err = TypePattern::parse("event_type", bad).unwrap_err();
            assert_eq!(err.field, "event_type", "{bad:?}");
        }
    }
}
