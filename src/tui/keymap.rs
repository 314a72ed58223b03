//! Keys: which key means which [`Command`] in which mode, and the tables the help overlay and the
//! README list. A pane's own keys are looked up before the global ones.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind};

use super::action::{Action, Command, TextEdit};
use super::panes::Pane;

/// One key as the tables spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// A character without Ctrl or Alt (Shift is part of the character: `R`).
    Char(char),
    /// Ctrl plus a letter.
    Ctrl(char),
    Code(KeyCode),
}

impl Key {
    fn matches(self, event: &KeyEvent) -> bool {
        let ctrl_or_alt = event.modifiers.intersects(KeyModifiers::CONTROL | KeyModifiers::ALT);
        match self {
            Key::Char(c) => event.code == KeyCode::Char(c) && !ctrl_or_alt,
            Key::Ctrl(c) => event.code == KeyCode::Char(c) && event.modifiers.contains(KeyModifiers::CONTROL),
            Key::Code(code) => event.code == code,
        }
    }
}

/// Keys bound to a command, with how the help overlay shows them. An empty `help` hides the row
/// (a key already described by another row, like `2`…`6` under `1-6`).
#[derive(Debug, Clone, Copy)]
pub struct Binding {
    pub keys: &'static [Key],
    pub label: &'static str,
    pub command: Command,
    pub help: &'static str,
}

const fn bind(keys: &'static [Key], label: &'static str, command: Command, help: &'static str) -> Binding {
    Binding { keys, label, command, help }
}

use Key::{Char, Code, Ctrl};

/// Keys that work in every pane.
pub const GLOBAL: &[Binding] = &[
    bind(
        &[Char('1')],
        "1-8",
        Command::ShowPane(1),
        "switch pane: Live History Statistics DLQ Processors Subscriptions Streams Cluster",
    ),
    bind(&[Char('2')], "2", Command::ShowPane(2), ""),
    bind(&[Char('3')], "3", Command::ShowPane(3), ""),
    bind(&[Char('4')], "4", Command::ShowPane(4), ""),
    bind(&[Char('5')], "5", Command::ShowPane(5), ""),
    bind(&[Char('6')], "6", Command::ShowPane(6), ""),
    bind(&[Char('7')], "7", Command::ShowPane(7), ""),
    bind(&[Char('8')], "8", Command::ShowPane(8), ""),
    bind(&[Code(KeyCode::Tab)], "Tab / Shift-Tab", Command::NextPane, "next / previous pane"),
    bind(&[Code(KeyCode::BackTab)], "Shift-Tab", Command::PrevPane, ""),
    bind(&[Code(KeyCode::Up), Char('k')], "↑ ↓ / k j", Command::Up, "move the selection (mouse wheel scrolls)"),
    bind(&[Code(KeyCode::Down), Char('j')], "↓", Command::Down, ""),
    bind(&[Code(KeyCode::PageUp)], "PgUp PgDn", Command::PageUp, "move a screen up / down"),
    bind(&[Code(KeyCode::PageDown)], "PgDn", Command::PageDown, ""),
    bind(&[Code(KeyCode::Home)], "Home End", Command::Top, "first / last row"),
    bind(&[Code(KeyCode::End)], "End", Command::Bottom, ""),
    bind(&[Code(KeyCode::Esc)], "Esc", Command::Close, "close a popup"),
    bind(
        &[Char(':')],
        ":",
        Command::CommandLine,
        "command line: :dlq groups, :history type=order.* since=1h, … (Tab completes)",
    ),
    bind(&[Char('?')], "?", Command::Help, "this help"),
    bind(&[Char('q'), Ctrl('c')], "q / Ctrl-C", Command::Quit, "quit"),
];

pub const LIVE: &[Binding] = &[
    bind(&[Char(' ')], "space", Command::Pause, "pause / resume following new events"),
    bind(&[Char('/')], "/", Command::Filter, "filter: type pattern, source, category, user, text"),
    bind(&[Code(KeyCode::Enter)], "Enter", Command::Open, "the selected event in full (results, delivery attempts)"),
    bind(&[Code(KeyCode::End)], "End", Command::Bottom, "follow the newest event again"),
];

pub const HISTORY: &[Binding] = &[
    bind(
        &[Char('/'), Char('f')],
        "/ or f",
        Command::Filter,
        "filter form: type, source, category, status, user, stream, time, text",
    ),
    bind(&[Char('n'), Code(KeyCode::Right)], "n / →", Command::NextPage, "next page"),
    bind(&[Char('p'), Code(KeyCode::Left)], "p / ←", Command::PrevPage, "previous page"),
    bind(&[Code(KeyCode::Enter)], "Enter", Command::Open, "the selected event in full (results, delivery attempts)"),
    bind(&[Char('R')], "R", Command::Replay, "replay the events the filter selects (dry run first, then confirm)"),
    bind(
        &[Char('A')],
        "A",
        Command::Archive,
        "archive the processed and failed events before the end of the filter's time range (asks first with the count)",
    ),
    bind(&[Char('g')], "g", Command::Refresh, "run the query again"),
];

pub const STATISTICS: &[Binding] =
    &[bind(&[Char('g')], "g", Command::Refresh, "refresh now (it refreshes every second)")];

pub const DLQ: &[Binding] = &[
    bind(&[Char('g')], "g", Command::ToggleGroups, "entries / groups by cause (kind, target, last status or error)"),
    bind(&[Code(KeyCode::Enter)], "Enter", Command::Open, "the entry with every attempt; on a group, the group"),
    bind(&[Char('r')], "r", Command::Retry, "retry the selected entry, or every entry of the group (asks first)"),
    bind(&[Char(' ')], "space", Command::Mark, "mark / unmark the selected entry"),
    bind(
        &[Char('R')],
        "R",
        Command::RetryMarked,
        "retry the marked entries, or all shown when none is marked; on a group, the group (asks first)",
    ),
    bind(
        &[Char('d')],
        "d",
        Command::Discard,
        "discard the selected entry, or the whole group (asks first with the count; events stay)",
    ),
    bind(&[Char('f')], "f / F", Command::NextFilter, "only one subscription's or processor's entries: next / previous"),
    bind(&[Char('F')], "F", Command::PrevFilter, ""),
    bind(&[Ctrl('r')], "Ctrl-R", Command::Refresh, "reload"),
];

pub const PROCESSORS: &[Binding] = &[
    bind(&[Char('t'), Char(' ')], "t / space", Command::Toggle, "turn the selected processor on / off"),
    bind(&[Code(KeyCode::Enter)], "Enter", Command::Open, "the processor's details and configuration"),
    bind(&[Char('g')], "g", Command::Refresh, "reload"),
];

pub const SUBSCRIPTIONS: &[Binding] = &[
    bind(&[Char('t')], "t", Command::Toggle, "turn the selected subscription on / off"),
    bind(&[Char('x')], "x", Command::Delete, "delete the selected subscription (asks first)"),
    bind(&[Code(KeyCode::Enter)], "Enter", Command::Open, "details with its latest delivery attempts"),
    bind(&[Char('g')], "g", Command::Refresh, "reload"),
];

pub const STREAMS: &[Binding] = &[
    bind(&[Char('/')], "/", Command::Filter, "list the streams whose id starts with… (order:, users:u1)"),
    bind(
        &[Code(KeyCode::Enter)],
        "Enter",
        Command::Open,
        "the selected stream: its events as a timeline, the state beside",
    ),
    bind(
        &[Code(KeyCode::Left), Char('h')],
        "← → / h l",
        Command::StepBack,
        "in a stream: the version before / after (time travel; changed fields highlighted)",
    ),
    bind(&[Code(KeyCode::Right), Char('l')], "→", Command::StepForward, ""),
    bind(&[Char('t')], "t", Command::JumpToTime, "in a stream: jump to the version current at a time"),
    bind(&[Code(KeyCode::Home)], "Home End", Command::Top, "first / last version (or stream)"),
    bind(&[Code(KeyCode::Esc)], "Esc", Command::Close, "back from a stream to the list"),
    bind(&[Ctrl('r')], "Ctrl-R", Command::Refresh, "reload"),
];

pub const CLUSTER: &[Binding] = &[bind(&[Ctrl('r')], "Ctrl-R", Command::Refresh, "reload (it reloads every 2 s)")];

pub const CONFIRM: &[Binding] = &[
    bind(&[Char('y'), Char('Y'), Code(KeyCode::Enter)], "y / Enter", Command::Confirm, "yes, do it"),
    bind(&[Char('n'), Char('N'), Code(KeyCode::Esc)], "n / Esc", Command::Close, "no"),
    bind(&[Ctrl('c')], "Ctrl-C", Command::Quit, ""),
];

pub const DETAIL: &[Binding] = &[
    bind(&[Code(KeyCode::Up), Char('k')], "↑ ↓ / k j", Command::Up, "scroll"),
    bind(&[Code(KeyCode::Down), Char('j')], "↓", Command::Down, ""),
    bind(&[Code(KeyCode::PageUp)], "PgUp PgDn", Command::PageUp, "scroll a screen"),
    bind(&[Code(KeyCode::PageDown)], "PgDn", Command::PageDown, ""),
    bind(&[Code(KeyCode::Home)], "Home End", Command::Top, "top / bottom"),
    bind(&[Code(KeyCode::End)], "End", Command::Bottom, ""),
    bind(&[Code(KeyCode::Esc), Code(KeyCode::Enter), Code(KeyCode::Backspace)], "Esc / Enter", Command::Close, "close"),
    bind(&[Char('?')], "?", Command::Help, "help"),
    bind(&[Char('q'), Ctrl('c')], "q / Ctrl-C", Command::Quit, "quit"),
];

pub const HELP: &[Binding] = &[
    bind(&[Code(KeyCode::Esc), Char('?'), Code(KeyCode::Enter)], "Esc / ?", Command::Close, "close the help"),
    bind(&[Code(KeyCode::Up), Char('k')], "↑ ↓", Command::Up, "scroll"),
    bind(&[Code(KeyCode::Down), Char('j')], "↓", Command::Down, ""),
    bind(&[Char('q'), Ctrl('c')], "q / Ctrl-C", Command::Quit, "quit"),
];

pub const REPLAY: &[Binding] = &[
    bind(&[Char('y'), Code(KeyCode::Enter)], "y / Enter", Command::Confirm, "start the replay (after the dry run)"),
    bind(
        &[Code(KeyCode::Right), Code(KeyCode::Tab)],
        "← →",
        Command::NextChoice,
        "choose the target: everything that matches, one subscription or processor",
    ),
    bind(&[Code(KeyCode::Left), Code(KeyCode::BackTab)], "←", Command::PrevChoice, ""),
    bind(&[Code(KeyCode::Esc), Char('n')], "Esc", Command::Close, "cancel, or close when running (the replay goes on)"),
    bind(&[Ctrl('c')], "Ctrl-C", Command::Quit, ""),
];

/// The form keys, for the help overlay (typing itself is not a binding).
pub const FORM_HELP: &[(&str, &str)] = &[
    ("type", "edit the focused field"),
    ("Tab / ↓, Shift-Tab / ↑", "next / previous field"),
    ("← → Home End", "move in the field"),
    ("Ctrl-U", "empty the field"),
    ("Enter", "apply the filter"),
    ("Esc", "cancel"),
];

/// What the keyboard is talking to right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pane(Pane),
    Help,
    Confirm,
    Detail,
    Replay,
    /// A form with text fields: keys are typed.
    Form,
    /// The `:` command line: keys are typed; Tab completes, ↑/↓ recall.
    CommandLine,
}

/// The bindings that apply in `mode`, most specific first.
pub fn bindings(mode: Mode) -> Vec<&'static [Binding]> {
    match mode {
        Mode::Pane(pane) => vec![pane_bindings(pane), GLOBAL],
        Mode::Help => vec![HELP],
        Mode::Confirm => vec![CONFIRM],
        Mode::Detail => vec![DETAIL],
        Mode::Replay => vec![REPLAY],
        Mode::Form | Mode::CommandLine => vec![],
    }
}

pub fn pane_bindings(pane: Pane) -> &'static [Binding] {
    match pane {
        Pane::Live => LIVE,
        Pane::History => HISTORY,
        Pane::Statistics => STATISTICS,
        Pane::Dlq => DLQ,
        Pane::Processors => PROCESSORS,
        Pane::Subscriptions => SUBSCRIPTIONS,
        Pane::Streams => STREAMS,
        Pane::Cluster => CLUSTER,
    }
}

/// What a key press means in `mode`; `None` for keys that mean nothing there. Key releases and
/// repeats of releases are ignored (terminals that report them would double every key).
pub fn action_for_key(mode: Mode, key: KeyEvent) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    if Key::Ctrl('c').matches(&key) {
        return Some(Action::Command(Command::Quit));
    }
    if mode == Mode::Form {
        return text_edit(key).map(Action::Text);
    }
    if mode == Mode::CommandLine {
        let edit = match key.code {
            KeyCode::Tab => TextEdit::Complete,
            KeyCode::Up => TextEdit::Earlier,
            KeyCode::Down => TextEdit::Later,
            _ => return text_edit(key).map(Action::Text),
        };
        return Some(Action::Text(edit));
    }
    bindings(mode)
        .into_iter()
        .flat_map(|table| table.iter())
        .find(|binding| binding.keys.iter().any(|k| k.matches(&key)))
        .map(|binding| Action::Command(binding.command))
}

fn text_edit(key: KeyEvent) -> Option<TextEdit> {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    Some(match key.code {
        KeyCode::Char('u') if ctrl => TextEdit::Clear,
        KeyCode::Char(_) if ctrl || key.modifiers.contains(KeyModifiers::ALT) => return None,
        KeyCode::Char(c) => TextEdit::Char(c),
        KeyCode::Backspace => TextEdit::Backspace,
        KeyCode::Delete => TextEdit::Delete,
        KeyCode::Left => TextEdit::Left,
        KeyCode::Right => TextEdit::Right,
        KeyCode::Home => TextEdit::Home,
        KeyCode::End => TextEdit::End,
        KeyCode::Tab | KeyCode::Down => TextEdit::NextField,
        KeyCode::BackTab | KeyCode::Up => TextEdit::PrevField,
        KeyCode::Enter => TextEdit::Submit,
        KeyCode::Esc => TextEdit::Cancel,
        _ => return None,
    })
}

/// Rows the mouse wheel moves per notch.
const WHEEL_ROWS: i16 = 3;

pub fn action_for_mouse(mouse: MouseEvent) -> Option<Action> {
    match mouse.kind {
        MouseEventKind::ScrollDown => Some(Action::Scroll(WHEEL_ROWS)),
        MouseEventKind::ScrollUp => Some(Action::Scroll(-WHEEL_ROWS)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, modifiers)
    }

    fn command(mode: Mode, code: KeyCode, modifiers: KeyModifiers) -> Option<Command> {
        match action_for_key(mode, key(code, modifiers)) {
            Some(Action::Command(command)) => Some(command),
            _ => None,
        }
    }

    #[test]
    fn pane_keys_win_over_global_ones_and_differ_by_pane() {
        let none = KeyModifiers::NONE;
        assert_eq!(command(Mode::Pane(Pane::Live), KeyCode::Char(' '), none), Some(Command::Pause));
        assert_eq!(command(Mode::Pane(Pane::Dlq), KeyCode::Char(' '), none), Some(Command::Mark));
        assert_eq!(command(Mode::Pane(Pane::Processors), KeyCode::Char(' '), none), Some(Command::Toggle));
        assert_eq!(command(Mode::Pane(Pane::History), KeyCode::Char('R'), KeyModifiers::SHIFT), Some(Command::Replay));
        assert_eq!(command(Mode::Pane(Pane::Dlq), KeyCode::Char('R'), KeyModifiers::SHIFT), Some(Command::RetryMarked));
        assert_eq!(command(Mode::Pane(Pane::Statistics), KeyCode::Char('4'), none), Some(Command::ShowPane(4)));
        assert_eq!(command(Mode::Pane(Pane::Live), KeyCode::Char('x'), none), None);
    }

    #[test]
    fn ctrl_c_quits_everywhere_but_q_is_typed_in_forms() {
        for mode in [Mode::Form, Mode::Confirm, Mode::Detail, Mode::Help, Mode::Replay, Mode::Pane(Pane::Live)] {
            assert_eq!(command(mode, KeyCode::Char('c'), KeyModifiers::CONTROL), Some(Command::Quit), "{mode:?}");
        }
        assert!(matches!(
            action_for_key(Mode::Form, key(KeyCode::Char('q'), KeyModifiers::NONE)),
            Some(Action::Text(TextEdit::Char('q')))
        ));
        assert_eq!(command(Mode::Pane(Pane::History), KeyCode::Char('q'), KeyModifiers::NONE), Some(Command::Quit));
    }

    #[test]
    fn releases_are_ignored() {
        let mut release = key(KeyCode::Char('q'), KeyModifiers::NONE);
        release.kind = KeyEventKind::Release;
        assert!(action_for_key(Mode::Pane(Pane::Live), release).is_none());
    }

    #[test]
    fn every_visible_binding_has_a_label_and_help() {
        for table in [GLOBAL, LIVE, HISTORY, STATISTICS, DLQ, PROCESSORS, SUBSCRIPTIONS, CONFIRM, DETAIL, HELP, REPLAY]
        {
            for binding in table {
                assert!(!binding.keys.is_empty() && !binding.label.is_empty(), "{binding:?}");
            }
        }
    }
}
