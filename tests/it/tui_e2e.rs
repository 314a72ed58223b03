//! The console end to end: the built binary in a detached tmux session of fixed size, on a temporary
//! config (port 0, a temp SQLite file, a temp log file). Keys go in with `tmux send-keys`, the screen
//! comes out with `tmux capture-pane -p`. Without tmux the test says clearly that it was skipped.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_eventdeck");
const SESSION: &str = "console";

/// A tmux server of its own (`-L`), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn command(&self) -> Command {
        let mut command = Command::new("tmux");
        command.arg("-L").arg(&self.socket);
        // The server started by the first command inherits this environment: no configuration from
        // the caller's.
        command.env_remove("RUST_LOG").env_remove("TMUX");
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("EVENTDECK_")) {
            command.env_remove(key);
        }
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        let output = self.command().args(args).output().expect("run tmux");
        assert!(output.status.success(), "tmux {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
        output
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", SESSION]).stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", SESSION];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// Polls the screen until it shows every needle; panics with the last screen after `within`.
    async fn wait_for(&self, needles: &[&str], within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let screen = self.screen();
            if needles.iter().all(|n| screen.contains(n)) {
                return screen;
            }
            assert!(Instant::now() < deadline, "the console did not show {needles:?} within {within:?}:\n{screen}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // Best effort: the session may already be gone.
        let _ = self.command().arg("kill-server").output();
    }
}

fn tmux_available() -> bool {
    Command::new("tmux").arg("-V").output().is_ok_and(|o| o.status.success())
}

fn write_config(dir: &Path) -> std::path::PathBuf {
    let config = dir.join("eventdeck.toml");
    let text = format!(
        "[server]\naddr = \"127.0.0.1:0\"\n[storage]\nurl = \"sqlite://{}\"\n[console]\nlog_file = \"{}\"\n",
        dir.join("events.db").display(),
        dir.join("console.log").display()
    );
    std::fs::write(&config, text).expect("write the config");
    config
}

/// The API address the status bar shows.
fn api_url(screen: &str) -> String {
    let prefix = "http://127.0.0.1:";
    let start = screen.find(prefix).expect("the screen shows the API address") + prefix.len();
    let port: String = screen[start..].chars().take_while(char::is_ascii_digit).collect();
    format!("{prefix}{port}")
}

#[tokio::test]
async fn the_console_runs_in_a_real_terminal() {
    if !tmux_available() {
        // Straight to stderr: the test harness would hide a print from a passing test.
        let _ = writeln!(
            std::io::stderr(),
            "tui_e2e::the_console_runs_in_a_real_terminal SKIPPED: tmux is not installed (CI installs it in .ci/run)"
        );
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path());
    let tmux = Tmux { socket: format!("eventdeck-e2e-{}", std::process::id()) };
    let shell = format!("'{BIN}' --config '{}' console; echo \"EXITED:$?\"; sleep 60", config.display());
    let dir_text = dir.path().display().to_string();
    tmux.run(&["new-session", "-d", "-s", SESSION, "-x", "120", "-y", "36", "-c", &dir_text, &shell]);

    let screen = tmux.wait_for(&["1 Live 0", "No events yet", "EMBEDDED"], Duration::from_secs(30)).await;
    let url = api_url(&screen);
    assert!(screen.contains(&format!("curl -X POST {url}/api/v1/events/create")), "{screen}");

    // An event posted over HTTP shows up in the Live pane.
    let answer = reqwest::Client::new()
        .post(format!("{url}/api/v1/events/create"))
        .json(&json!({"event_type": "e2e.created", "user_id": "tmux-user", "stream_id": "order:e2e", "data": {"hello": "terminal"}}))
        .send()
        .await
        .expect("post an event");
    assert_eq!(answer.status(), 201);
    tmux.wait_for(
        &["Live · 1 events", "e2e.created", "tmux-user", "{\"hello\":\"terminal\"}"],
        Duration::from_secs(10),
    )
    .await;

    // Every pane, by number.
    tmux.keys(&["2"]);
    tmux.wait_for(&["History · 1 total", "e2e.created"], Duration::from_secs(10)).await;
    tmux.keys(&["3"]);
    tmux.wait_for(&["Statistics · 1 events", "By type (top 10)", "latency p99"], Duration::from_secs(10)).await;
    tmux.keys(&["4"]);
    tmux.wait_for(&["DLQ · 0 entries", "dead-letter queue is empty"], Duration::from_secs(10)).await;
    // g: grouped by cause, and back.
    tmux.keys(&["g"]);
    tmux.wait_for(&["DLQ · 0 groups · 0 entries", "dead-letter queue is empty"], Duration::from_secs(10)).await;
    tmux.keys(&["g"]);
    tmux.wait_for(&["DLQ · 0 entries"], Duration::from_secs(10)).await;
    tmux.keys(&["5"]);
    tmux.wait_for(&["Processors · "], Duration::from_secs(10)).await;
    tmux.keys(&["7"]);
    tmux.wait_for(&["Streams · every stream · 1 shown", "order:e2e", "e2e.created"], Duration::from_secs(10)).await;
    tmux.keys(&["Enter"]);
    tmux.wait_for(
        &["Streams · order:e2e · version 1 of 1", "State at version 1 · e2e.created"],
        Duration::from_secs(10),
    )
    .await;
    tmux.keys(&["Escape"]);
    tmux.wait_for(&["Streams · every stream"], Duration::from_secs(10)).await;
    tmux.keys(&["8"]);
    tmux.wait_for(&["Cluster · 1 instance sharing the store", "Heartbeat"], Duration::from_secs(10)).await;
    // The command line: :dlq groups.
    tmux.keys(&[":"]);
    tmux.keys(&["dlq groups", "Enter"]);
    tmux.wait_for(&["DLQ · 0 groups"], Duration::from_secs(10)).await;
    tmux.keys(&["6"]);
    tmux.wait_for(&["Subscriptions · 0 (0 on)"], Duration::from_secs(10)).await;

    // The help overlay for the current pane, with the log file; Esc closes it.
    tmux.keys(&["?"]);
    let log = dir.path().join("console.log");
    tmux.wait_for(
        &["Subscriptions pane", "delete the selected subscription", &format!("Log file: {}", log.display())],
        Duration::from_secs(10),
    )
    .await;
    tmux.keys(&["Escape"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while tmux.screen().contains("Subscriptions pane") {
        assert!(Instant::now() < deadline, "Esc did not close the help");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Tab wraps around to the Live pane.
    tmux.keys(&["8", "Tab"]);
    tmux.wait_for(&["Live · 1 events"], Duration::from_secs(10)).await;

    // q quits with status 0 and gives the terminal back (the alternate screen is gone).
    tmux.keys(&["q"]);
    let screen = tmux.wait_for(&["EXITED:0"], Duration::from_secs(20)).await;
    assert!(!screen.contains("1 Live"), "the console's screen is still shown after exit:\n{screen}");
    let log = std::fs::read_to_string(&log).expect("the console wrote its log file");
    assert!(log.contains("console serving the HTTP API"), "{log}");
}
