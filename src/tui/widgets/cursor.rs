//! A selection in a list plus the first visible row, kept valid as the list changes size.

use std::ops::Range;

use crate::tui::action::Command;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListCursor {
    pub selected: usize,
    /// The first row shown.
    pub top: usize,
}

impl ListCursor {
    /// Moves the selection by `delta` rows (negative: up), keeping it in the list and on screen.
    pub fn move_by(&mut self, delta: isize, len: usize, rows: usize) {
        let target = self.selected.saturating_add_signed(delta);
        self.select(target, len, rows);
    }

    /// Moves the selection for a list movement key (up, down, page up and down, top, bottom) in a list
    /// of `len` shown `rows` at a time; false for any other command, which the pane handles itself.
    pub fn navigate(&mut self, command: Command, len: usize, rows: usize) -> bool {
        match command {
            Command::Up => self.move_by(-1, len, rows),
            Command::Down => self.move_by(1, len, rows),
            Command::PageUp => self.move_by(-(rows as isize), len, rows),
            Command::PageDown => self.move_by(rows as isize, len, rows),
            Command::Top => self.select(0, len, rows),
            Command::Bottom => self.select(len.saturating_sub(1), len, rows),
            _ => return false,
        }
        true
    }

    pub fn select(&mut self, index: usize, len: usize, rows: usize) {
        self.selected = index.min(len.saturating_sub(1));
        self.top = visible_top(self.selected, self.top, rows);
    }

    /// After the list changed: the selection stays where it was, within the new length.
    pub fn clamp(&mut self, len: usize, rows: usize) {
        self.select(self.selected, len, rows);
    }

    /// The rows to draw in a viewport of `rows`, always including the selection.
    pub fn window(&self, len: usize, rows: usize) -> Range<usize> {
        let top = visible_top(self.selected, self.top, rows).min(len);
        top..(top + rows).min(len)
    }
}

/// The first row to show so that `selected` is visible, moving `top` as little as possible.
pub fn visible_top(selected: usize, top: usize, rows: usize) -> usize {
    let rows = rows.max(1);
    if selected < top {
        selected
    } else if selected >= top + rows {
        selected + 1 - rows
    } else {
        top
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_stays_in_the_list_and_on_screen() {
        let mut cursor = ListCursor::default();
        cursor.move_by(12, 100, 10);
        assert_eq!((cursor.selected, cursor.top), (12, 3));
        assert_eq!(cursor.window(100, 10), 3..13);
        cursor.move_by(-20, 100, 10);
        assert_eq!((cursor.selected, cursor.top), (0, 0));
        cursor.move_by(500, 100, 10);
        assert_eq!(cursor.selected, 99);
        cursor.clamp(5, 10);
        assert_eq!(cursor.selected, 4);
        assert_eq!(cursor.window(5, 10), 4..5, "top follows the selection when the list shrinks");
        cursor.clamp(0, 10);
        assert_eq!(cursor.window(0, 10), 0..0);
    }
}
