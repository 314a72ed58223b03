//! Timestamps as the API speaks them: UTC, microsecond precision, RFC 3339 on the wire.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Microseconds since the Unix epoch, UTC.
///
/// Precision is fixed at microseconds when a value is made, so what a create answers is exactly what a
/// later read returns (the store keeps the same integer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub fn now() -> Self {
        Self(Utc::now().timestamp_micros())
    }

    pub const fn from_micros(micros: i64) -> Self {
        Self(micros)
    }

    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// This moment moved `by` later (saturating).
    pub fn plus(self, by: std::time::Duration) -> Self {
        Self(self.0.saturating_add(i64::try_from(by.as_micros()).unwrap_or(i64::MAX)))
    }

    /// This moment moved `by` earlier (saturating).
    pub fn minus(self, by: std::time::Duration) -> Self {
        Self(self.0.saturating_sub(i64::try_from(by.as_micros()).unwrap_or(i64::MAX)))
    }

    /// Microseconds from `earlier` to this moment (negative when `earlier` is later).
    pub const fn micros_since(self, earlier: Timestamp) -> i64 {
        self.0.saturating_sub(earlier.0)
    }

    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.0).unwrap_or_default()
    }

    /// Parses RFC 3339 (`2026-01-02T03:04:05.123456Z`, any offset), truncating below microseconds.
    /// The time must fall in the years 1 to 9999 once converted to UTC: outside them it could not be
    /// written back as RFC 3339.
    pub fn parse(text: &str) -> Result<Self, TimeError> {
        let parsed = DateTime::parse_from_rfc3339(text).map_err(TimeError::Syntax)?.with_timezone(&Utc);
        if !(1..=9999).contains(&parsed.year()) {
            return Err(TimeError::OutOfRange);
        }
        Ok(Self(parsed.timestamp_micros()))
    }
}

/// Why a text is not a [`Timestamp`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("not an RFC 3339 time: {0}")]
    Syntax(chrono::ParseError),
    #[error("outside the years 1 to 9999 once converted to UTC")]
    OutOfRange,
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(value: DateTime<Utc>) -> Self {
        Self(value.timestamp_micros())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_datetime().to_rfc3339_opts(SecondsFormat::Micros, true))
    }
}

impl utoipa::PartialSchema for Timestamp {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        super::schema::string(
            Some(utoipa::openapi::KnownFormat::DateTime),
            "RFC 3339 UTC with microseconds, e.g. 2026-01-02T03:04:05.123456Z",
        )
    }
}

impl utoipa::ToSchema for Timestamp {}

impl FromStr for Timestamp {
    type Err = TimeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_microseconds_and_utc() {
        let ts = Timestamp::parse("2026-01-02T04:04:05.1234567+01:00").unwrap();
        assert_eq!(ts.to_string(), "2026-01-02T03:04:05.123456Z");
        assert_eq!(Timestamp::parse(&ts.to_string()).unwrap(), ts);
    }

    #[test]
    fn rejects_non_rfc3339() {
        assert!(Timestamp::parse("2026-01-02 03:04").is_err());
        assert!(Timestamp::parse("yesterday").is_err());
    }

    #[test]
    fn only_years_1_to_9999_in_utc() {
        for outside in ["9999-12-31T23:30:00-01:00", "0000-12-31T23:59:59Z", "0001-01-01T00:30:00+01:00"] {
            assert_eq!(Timestamp::parse(outside), Err(TimeError::OutOfRange), "{outside}");
        }
        for edge in ["9999-12-31T23:59:59.999999Z", "0001-01-01T00:00:00Z", "0001-01-01T00:30:00-01:00"] {
            let ts = Timestamp::parse(edge).unwrap();
            assert_eq!(Timestamp::parse(&ts.to_string()).unwrap(), ts, "{edge} reads back");
            assert_eq!(ts.to_string().len(), 27, "{ts} is RFC 3339 with microseconds");
        }
    }
}
