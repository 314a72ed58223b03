//! Validation failures of a single field, shared by every layer that checks input.

use std::fmt;

/// A field that failed validation: which one, and what would have been accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// How a field whose name is the empty string is named.
const EMPTY_NAME: &str = "\"\"";

impl FieldError {
    /// An empty `field` (a JSON key or query parameter that is the empty string) is named `""`, as JSON
    /// writes it, so the answer still says which field is wrong.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        let field = if field.is_empty() { EMPTY_NAME.to_owned() } else { field };
        Self { field, message: message.into() }
    }

    /// `field`: `value` is not one of the accepted values, which are listed.
    pub fn one_of(field: &str, value: &str, accepted: &[&str]) -> Self {
        Self::new(field, format!("unknown value `{value}`; accepted values: {}", accepted.join(", ")))
    }

    /// A field the body may not have: names it, the accepted field closest to it (a typo such as
    /// `expected_versoin` must not pass silently), and every accepted one.
    pub fn unknown_field(field: impl Into<String>, accepted: &[&str]) -> Self {
        let field = field.into();
        let name = field.rsplit('.').next().unwrap_or(&field);
        let closest = accepted
            .iter()
            .map(|candidate| (strsim::jaro_winkler(name, candidate), *candidate))
            .filter(|(score, _)| *score >= 0.8)
            .max_by(|a, b| a.0.total_cmp(&b.0));
        let message = match closest {
            Some((_, suggestion)) => {
                format!("is not a field here; did you mean `{suggestion}`? Accepted: {}", accepted.join(", "))
            }
            None => format!("is not a field here; accepted: {}", accepted.join(", ")),
        };
        Self::new(field, message)
    }

    /// The field error for a serde message at `path` (`.` or empty for the top level): an unknown
    /// field becomes [`FieldError::unknown_field`] naming that field; anything else is kept as it is.
    pub fn from_serde(path: &str, message: &str) -> Self {
        let parent = if path == "." { "" } else { path };
        let at = |field: &str| if parent.is_empty() { field.to_owned() } else { format!("{parent}.{field}") };
        // serde's wording: "unknown field `x`, expected `a` or `b`" / "expected one of `a`, `b`, `c`" /
        // "there are no fields"; serde_json may add " at line L column C".
        if let Some(rest) = message.strip_prefix("unknown field `")
            && let Some((field, expected)) = rest.split_once("`, ")
        {
            let expected = expected.split(" at line ").next().unwrap_or(expected);
            // A key that is the empty string is still named, as JSON writes it.
            let field = if field.is_empty() { EMPTY_NAME } else { field };
            let accepted: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
            // serde_path_to_error's path may already end at the unknown field.
            let full = if parent.rsplit('.').next() == Some(field) { parent.to_owned() } else { at(field) };
            return Self::unknown_field(full, &accepted);
        }
        Self::new(if parent.is_empty() { "body".to_owned() } else { parent.to_owned() }, message)
    }

    /// Prefixes the field with the place it sits in, such as `events[3]`.
    pub fn within(mut self, parent: &str) -> Self {
        self.field = format!("{parent}.{}", self.field);
        self
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for FieldError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_suggest_the_closest_accepted_one() {
        let error = FieldError::from_serde(
            ".",
            "unknown field `expected_versoin`, expected one of `event_type`, `stream_id`, `expected_version` at line 1 column 30",
        );
        assert_eq!(error.field, "expected_versoin");
        assert!(error.message.contains("did you mean `expected_version`?"), "{}", error.message);
        assert!(error.message.ends_with("event_type, stream_id, expected_version"), "{}", error.message);

        let error = FieldError::from_serde("retry_policy", "unknown field `zzz`, expected `a` or `b`");
        assert_eq!(error.field, "retry_policy.zzz");
        let error = FieldError::from_serde("retry_policy.zzz", "unknown field `zzz`, expected `a` or `b`");
        assert_eq!(error.field, "retry_policy.zzz", "a path that names the field already");
        assert_eq!(error.message, "is not a field here; accepted: a, b");

        let other = FieldError::from_serde("data", "invalid type: string, expected a map");
        assert_eq!((other.field.as_str(), other.message.as_str()), ("data", "invalid type: string, expected a map"));
    }
}
