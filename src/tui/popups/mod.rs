//! Popups drawn over the panes: help, confirmation, detail views, the replay dialog and filter forms.
//! At most one is open; while it is, it gets the keys.

pub mod command;
pub mod confirm;
pub mod detail;
pub mod filter;
pub mod help;
pub mod replay;

use ratatui::layout::Rect;

pub use command::{CommandLine, Prompt, PromptFor};
pub use confirm::{Confirm, PendingOp};
pub use detail::{Detail, DetailBody, DetailKey};
pub use filter::FilterForm;
pub use help::HelpState;
pub use replay::ReplayDialog;

#[derive(Debug)]
pub enum Popup {
    Help(HelpState),
    Filter(FilterForm),
    Confirm(Confirm),
    Detail(Detail),
    Replay(ReplayDialog),
    Command(CommandLine),
    Prompt(Prompt),
}

/// A rectangle of at most `width` × `height` in the middle of `area`.
pub fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect { x: area.x + (area.width - width) / 2, y: area.y + (area.height - height) / 2, width, height }
}
