//! Text formatting for tables and titles: counts, rates, ages, clock times, truncation.

use crate::domain::Timestamp;

/// `12345` → `12,345`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn signed_count(n: i64) -> String {
    if n < 0 { format!("-{}", count(n.unsigned_abs())) } else { count(n as u64) }
}

/// Events per second, with one decimal below 100.
pub fn rate(per_second: f64) -> String {
    if per_second >= 100.0 { format!("{}/s", count(per_second.round() as u64)) } else { format!("{per_second:.1}/s") }
}

pub fn percent(value: f64) -> String {
    format!("{value:.1}%")
}

/// How long ago `then` was, in the largest whole unit: `42s`, `5m`, `3h`, `2d`.
pub fn age(then: Timestamp, now: Timestamp) -> String {
    let seconds = (now.as_micros() - then.as_micros()).max(0) / 1_000_000;
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// `HH:MM:SS.mmm` in UTC, as the API's times are.
pub fn clock(ts: Timestamp) -> String {
    ts.to_datetime().format("%H:%M:%S%.3f").to_string()
}

/// `YYYY-MM-DD HH:MM:SS` in UTC.
pub fn date_time(ts: Timestamp) -> String {
    ts.to_datetime().format("%Y-%m-%d %H:%M:%S").to_string()
}

/// At most `width` characters of `text`, ending in `…` when cut; control characters (line breaks)
/// become spaces. Wide characters count as one: ratatui clips whatever still overflows the cell.
pub fn truncate(text: &str, width: usize) -> String {
    let cut = text.chars().nth(width).is_some();
    let keep = if cut { width.saturating_sub(1) } else { width };
    let mut out: String = text.chars().take(keep).map(|c| if c.is_control() { ' ' } else { c }).collect();
    if cut && width > 0 {
        out.push('…');
    }
    out
}

/// The last 8 characters of an id after `…`: the random tail of a time-ordered id, so two ids made
/// within the same minute still look different (their first digits are the same clock).
pub fn short_id(id: &impl std::fmt::Display) -> String {
    let text = id.to_string();
    let tail: String = text.chars().rev().take(8).collect::<Vec<_>>().into_iter().rev().collect();
    format!("…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids_keep_the_random_tail() {
        let a = "01a231fc-0000-7000-8000-00000000beef";
        let b = "01a231fc-0000-7000-8000-00000000cafe";
        assert_eq!(short_id(&a), "…0000beef");
        assert_ne!(short_id(&a), short_id(&b));
    }

    #[test]
    fn counts_have_thousands_separators() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(signed_count(-4500), "-4,500");
    }

    #[test]
    fn ages_use_the_largest_unit() {
        let now = Timestamp::from_micros(10_000_000_000_000);
        let ago = |s: i64| Timestamp::from_micros(now.as_micros() - s * 1_000_000);
        assert_eq!(age(ago(5), now), "5s");
        assert_eq!(age(ago(300), now), "5m");
        assert_eq!(age(ago(7200), now), "2h");
        assert_eq!(age(ago(3 * 86_400), now), "3d");
        assert_eq!(age(ago(-10), now), "0s", "clock skew never shows a negative age");
    }

    #[test]
    fn truncation_marks_the_cut() {
        assert_eq!(truncate("hello", 10), "hello");
        assert_eq!(truncate("hello world", 8), "hello w…");
        assert_eq!(truncate("a\nb", 5), "a b");
        assert_eq!(truncate("abc", 0), "");
    }

    #[test]
    fn rates_keep_one_decimal_when_small() {
        assert_eq!(rate(3.25), "3.2/s");
        assert_eq!(rate(4321.4), "4,321/s");
    }
}
