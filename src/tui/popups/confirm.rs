//! The yes/no question asked before anything that destroys or re-sends, with how many items it touches.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use crate::domain::delivery::DlqSelector;
use crate::domain::{DlqId, SubscriptionId, Timestamp};
use crate::tui::theme;

/// What happens on yes.
#[derive(Debug, Clone, PartialEq)]
pub enum PendingOp {
    RetryDeadLetters {
        selector: DlqSelector,
        count: usize,
    },
    DiscardDeadLetter(DlqId),
    DiscardDeadLetters {
        selector: DlqSelector,
        count: u64,
    },
    DeleteSubscription(SubscriptionId),
    /// Archive the events before this time.
    Archive {
        before: Timestamp,
        count: u64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Confirm {
    pub title: String,
    pub message: String,
    pub op: PendingOp,
}

pub fn render(frame: &mut Frame, area: Rect, confirm: &Confirm) {
    let popup = super::centered(area, 70, 8);
    frame.render_widget(Clear, popup);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme::warning())
        .title(Span::styled(format!(" {} ", confirm.title), theme::title()));
    let lines = vec![
        Line::raw(confirm.message.clone()),
        Line::raw(""),
        Line::from(vec![
            Span::styled("y", theme::key()),
            Span::raw(" / "),
            Span::styled("Enter", theme::key()),
            Span::raw(" yes    "),
            Span::styled("n", theme::key()),
            Span::raw(" / "),
            Span::styled("Esc", theme::key()),
            Span::styled(" no", Style::new()),
        ]),
    ];
    frame.render_widget(Paragraph::new(lines).block(block).wrap(Wrap { trim: false }), popup);
}
