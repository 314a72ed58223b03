//! Horizontal bar charts as text lines: `name ████▌ 1,234`, scaled to the largest value.

use ratatui::style::Style;
use ratatui::text::{Line, Span};

use super::format::{count, truncate};

/// One bar per `(name, value)`, largest first as given, fitted into `width` columns.
pub fn lines<'a>(items: &[(String, u64)], width: u16, style: Style) -> Vec<Line<'a>> {
    let max = items.iter().map(|(_, v)| *v).max().unwrap_or(0);
    let name_width = items.iter().map(|(n, _)| n.chars().count()).max().unwrap_or(0).min(24);
    let value_width = items.iter().map(|(_, v)| count(*v).len()).max().unwrap_or(1);
    let bar_width = usize::from(width).saturating_sub(name_width + value_width + 2);
    items
        .iter()
        .map(|(name, value)| {
            let eighths = if max == 0 { 0 } else { (*value as u128 * bar_width as u128 * 8 / max as u128) as usize };
            let mut bar = "█".repeat(eighths / 8);
            if eighths % 8 > 0 {
                bar.push(['▏', '▎', '▍', '▌', '▋', '▊', '▉'][eighths % 8 - 1]);
            }
            let bar_len = bar.chars().count();
            Line::from(vec![
                Span::raw(format!("{:<name_width$} ", truncate(name, name_width))),
                Span::styled(bar, style),
                Span::raw(format!("{} {:>value_width$}", " ".repeat(bar_width.saturating_sub(bar_len)), count(*value))),
            ])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_value() {
        let items = vec![("order.created".to_owned(), 100), ("user.login".to_owned(), 50), ("zero".to_owned(), 0)];
        let text: Vec<String> = lines(&items, 40, Style::new()).iter().map(|l| l.to_string()).collect();
        assert_eq!(text[0].matches('█').count(), 40 - 13 - 3 - 2);
        assert_eq!(text[1].matches('█').count(), 11);
        assert!(text[0].ends_with("100") && text[2].ends_with("  0"), "{text:?}");
        assert_eq!(text[2].matches('█').count(), 0);
    }
}
