//! The eight panes, one per file: each owns its state, its keys' effects (an `impl App` block) and its
//! drawing.

pub mod cluster;
pub mod dlq;
pub mod history;
pub mod live;
pub mod processors;
pub mod statistics;
pub mod streams;
pub mod subscriptions;

use ratatui::text::Span;
use ratatui::widgets::{Block, Borders};

use super::theme;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pane {
    Live,
    History,
    Statistics,
    Dlq,
    Processors,
    Subscriptions,
    Streams,
    Cluster,
}

impl Pane {
    pub const ALL: [Pane; 8] = [
        Pane::Live,
        Pane::History,
        Pane::Statistics,
        Pane::Dlq,
        Pane::Processors,
        Pane::Subscriptions,
        Pane::Streams,
        Pane::Cluster,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Pane::Live => "Live",
            Pane::History => "History",
            Pane::Statistics => "Statistics",
            Pane::Dlq => "DLQ",
            Pane::Processors => "Processors",
            Pane::Subscriptions => "Subscriptions",
            Pane::Streams => "Streams",
            Pane::Cluster => "Cluster",
        }
    }

    /// The name in a narrow tab bar.
    pub fn short_name(self) -> &'static str {
        match self {
            Pane::Live => "Live",
            Pane::History => "Hist",
            Pane::Statistics => "Stats",
            Pane::Dlq => "DLQ",
            Pane::Processors => "Procs",
            Pane::Subscriptions => "Subs",
            Pane::Streams => "Strm",
            Pane::Cluster => "Clus",
        }
    }

    /// 1-based, as the keys `1`…`8` choose them.
    pub fn number(self) -> u8 {
        Self::ALL.iter().position(|p| *p == self).map_or(1, |i| i as u8 + 1)
    }

    pub fn from_number(n: u8) -> Option<Pane> {
        Self::ALL.get(usize::from(n).checked_sub(1)?).copied()
    }

    pub fn next(self) -> Pane {
        Self::ALL[usize::from(self.number()) % Self::ALL.len()]
    }

    pub fn prev(self) -> Pane {
        Self::ALL[(usize::from(self.number()) + Self::ALL.len() - 2) % Self::ALL.len()]
    }
}

/// The bordered block every pane sits in, titled with its name and what it counts.
pub fn block(title: String) -> Block<'static> {
    Block::default().borders(Borders::ALL).title(Span::styled(format!(" {title} "), theme::title()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panes_cycle_both_ways_and_number_from_one() {
        assert_eq!(Pane::Live.prev(), Pane::Cluster);
        assert_eq!(Pane::Cluster.next(), Pane::Live);
        assert_eq!(Pane::Dlq.number(), 4);
        assert_eq!(Pane::from_number(7), Some(Pane::Streams));
        assert_eq!(Pane::from_number(0), None);
        assert_eq!(Pane::from_number(9), None);
    }
}
