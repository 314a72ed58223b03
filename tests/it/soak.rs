//! The short soak (`eventdeck bench --scenario soak`): real servers under mixed load, SIGKILLed and
//! restarted every few seconds, then its checks. 30 s of load on SQLite with one server, and on
//! PostgreSQL with three servers killed in turn when EVENTDECK_TEST_DATABASE_URL is set.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_eventdeck");

async fn soak(extra: &[&str]) {
    let mut command = Command::new(BIN);
    command.env_remove("RUST_LOG").kill_on_drop(true);
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("EVENTDECK_")) {
        command.env_remove(key);
    }
    let run = command
        .args(["bench", "--scenario", "soak", "--duration", "30", "--kill-every", "4", "--concurrency", "4"])
        .args(["--rate", "150"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output();
    let output = tokio::time::timeout(Duration::from_secs(240), run).await.expect("the soak ends").expect("run");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(output.status.success(), "the soak failed: {stdout}\n{stderr}");
    for check in [
        "acknowledged events stored once, with their seq",
        "stream versions gapless",
        "every event delivered to the always-200 sink",
        "nothing stuck in processing or claimed",
        "DLQ entries consistent with attempts",
        "statistics equal counting the rows",
    ] {
        let row = stdout.lines().find(|l| l.starts_with(check)).unwrap_or_else(|| panic!("no row {check}: {stdout}"));
        assert!(row.contains("| ok "), "{row}");
    }
    let kills = stdout.lines().find_map(|l| l.strip_prefix("kills ")).expect("the summary line");
    let kills: u64 = kills.split(';').next().unwrap().trim().parse().unwrap();
    assert!(kills >= 4, "only {kills} kills in 30 s");
}

#[tokio::test]
async fn sqlite_one_server_killed_every_few_seconds_keeps_every_promise() {
    soak(&[]).await;
}

#[tokio::test]
async fn postgres_three_servers_killed_in_turn_keep_every_promise() {
    let Ok(url) = std::env::var(eventdeck::storage::ScratchSchema::VARIABLE) else {
        println!("SKIPPED: {} is not set", eventdeck::storage::ScratchSchema::VARIABLE);
        return;
    };
    soak(&["--storage-url", &url, "--servers", "3"]).await;
}
