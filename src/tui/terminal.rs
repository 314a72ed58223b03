//! The terminal while the console runs: raw mode, the alternate screen and mouse capture, and their
//! restoration on every way out (normal exit, error, panic).

use std::io::{self, Stdout};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

use crossterm::cursor::Show;
use crossterm::event::{DisableMouseCapture, EnableMouseCapture};
use crossterm::execute;
use crossterm::terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

pub type Term = Terminal<CrosstermBackend<Stdout>>;

/// True while the terminal is in the console's mode; restoring is done once.
static ACTIVE: AtomicBool = AtomicBool::new(false);
static HOOK: Once = Once::new();

/// The terminal in raw mode on the alternate screen; dropping it restores the terminal.
pub struct TerminalGuard {
    pub terminal: Term,
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// Takes over the terminal. A panic anywhere restores it before the panic message is printed.
pub fn enter() -> io::Result<TerminalGuard> {
    install_panic_hook();
    enable_raw_mode()?;
    ACTIVE.store(true, Ordering::SeqCst);
    let setup = execute!(io::stdout(), EnterAlternateScreen, EnableMouseCapture)
        .and_then(|()| Terminal::new(CrosstermBackend::new(io::stdout())));
    match setup {
        Ok(mut terminal) => {
            terminal.hide_cursor()?;
            terminal.clear()?;
            Ok(TerminalGuard { terminal })
        }
        Err(error) => {
            restore();
            Err(error)
        }
    }
}

/// Leaves raw mode and the alternate screen and shows the cursor. Safe to call more than once and
/// from a panic hook.
pub fn restore() {
    if !ACTIVE.swap(false, Ordering::SeqCst) {
        return;
    }
    // Best effort: on the way out there is nothing better to do with a failure than to go on.
    let _ = disable_raw_mode();
    let _ = execute!(io::stdout(), DisableMouseCapture, LeaveAlternateScreen, Show);
}

fn install_panic_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // A panic in a task on a runtime worker is caught by tokio and the console goes on: keep
            // the screen. Anywhere else (the console's thread, main) the process is going down.
            let worker = std::thread::current().name().is_some_and(|name| name.starts_with("tokio-runtime-worker"));
            if !worker {
                restore();
            }
            tracing::error!(%info, "panic");
            previous(info);
        }));
    });
}
