//! Terminal input (keys, mouse, resize) turned into [`Action`]s for the current mode.

use crossterm::event::Event;

use super::action::Action;
use super::keymap::{self, Mode};

pub fn action_for(event: Event, mode: Mode) -> Option<Action> {
    match event {
        Event::Key(key) => keymap::action_for_key(mode, key),
        Event::Mouse(mouse) => keymap::action_for_mouse(mouse),
        Event::Resize(columns, rows) => Some(Action::Resize(columns, rows)),
        Event::FocusGained | Event::FocusLost | Event::Paste(_) => None,
    }
}
