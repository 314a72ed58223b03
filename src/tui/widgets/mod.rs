//! Small pieces the panes share: a scrolling list cursor, text formatting, and horizontal bars.

pub mod bars;
pub mod cursor;
pub mod format;
