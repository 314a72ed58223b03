//! Resource faults against the built binary: a full disk (a file-size limit on the server process), a
//! database locked by another process or read-only, an SSE client that reads nothing, and 1,000 idle
//! SSE clients (memory per client measured from the server's RSS).

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdout, Command};

const BIN: &str = env!("CARGO_BIN_EXE_eventdeck");

struct Served {
    child: Child,
    base: String,
    addr: String,
    _logs: Lines<BufReader<ChildStdout>>,
}

impl Served {
    fn pid(&self) -> i32 {
        i32::try_from(self.child.id().expect("running")).unwrap()
    }

    /// The server's resident memory, from /proc.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

fn command(dir: &Path) -> Command {
    let mut command = Command::new(BIN);
    command.current_dir(dir).env_remove("RUST_LOG").kill_on_drop(true);
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("EVENTDECK_")) {
        command.env_remove(key);
    }
    command
}

fn db_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("events.db").display())
}

/// `serve` on `dir/events.db`; `file_size_limit`: the most bytes any file it writes may hold (RLIMIT_FSIZE,
/// soft; the hard limit stays unlimited so the test can lift it), with SIGXFSZ ignored so a write past
/// it fails with EFBIG as on a full disk instead of killing the process.
async fn serve(dir: &Path, file_size_limit: Option<u64>) -> Served {
    let mut command = command(dir);
    command
        .args(["serve", "--addr", "127.0.0.1:0", "--storage-url", &db_url(dir)])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(limit) = file_size_limit {
        // SAFETY: between fork and exec only async-signal-safe calls: signal(2) and setrlimit(2).
        unsafe {
            command.as_std_mut().pre_exec(move || {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                let rlimit = libc::rlimit { rlim_cur: limit, rlim_max: libc::RLIM_INFINITY };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &rlimit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = command.spawn().expect("spawn eventdeck serve");
    let mut logs = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = logs.next_line().await.expect("read log") {
            let entry: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            if entry["fields"]["message"] == "eventdeck serving" {
                return entry["fields"]["addr"].as_str().expect("addr").to_owned();
            }
        }
        panic!("eventdeck serve exited before serving");
    })
    .await
    .expect("eventdeck serve started within 30 s");
    Served { child, base: format!("http://{addr}"), addr, _logs: logs }
}

/// Lifts (or sets) the soft file-size limit of a running process.
fn set_file_size_limit(pid: i32, limit: u64) {
    let rlimit = libc::rlimit { rlim_cur: limit, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: prlimit reads `rlimit` and writes nothing (the old-limit pointer is null).
    let done = unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, &rlimit, std::ptr::null_mut()) };
    assert_eq!(done, 0, "prlimit: {}", std::io::Error::last_os_error());
}

async fn create(client: &reqwest::Client, base: &str, body: &Value) -> (u16, Value) {
    let response = client.post(format!("{base}/api/v1/events/create")).json(body).send().await.expect("answered");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn total(client: &reqwest::Client, base: &str) -> u64 {
    let answer: Value = client.get(format!("{base}/api/v1/events?limit=1")).send().await.unwrap().json().await.unwrap();
    answer["total"].as_u64().expect("total")
}

#[tokio::test]
async fn a_full_disk_answers_503_loses_nothing_acknowledged_and_writes_resume_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let mut served = serve(dir.path(), Some(3 << 20)).await;
    let client = reqwest::Client::new();
    let filler = "x".repeat(16 * 1024);

    let mut acked = Vec::new();
    let mut full = None;
    for i in 0..2000 {
        let body = json!({"event_type": "disk.fill", "data": {"i": i, "filler": filler}});
        match create(&client, &served.base, &body).await {
            (201, event) => acked.push(event["event_id"].as_str().unwrap().to_owned()),
            (503, error) => {
                full = Some(error);
                break;
            }
            other => panic!("event {i}: unexpected answer {other:?}"),
        }
    }
    let error = full.expect("the file-size limit was reached");
    assert_eq!(error["error"]["code"], "storage_full", "{error}");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("full") && message.contains("space"), "{message}");
    assert!(acked.len() > 10, "only {} events fitted before the limit", acked.len());
    let before_full = acked.len();

    // While the limit holds, writes go on failing with the same answer until both files are at the
    // limit (before that some fit: a checkpoint moves the WAL into the database file and the WAL
    // starts again), and reads keep working.
    let (mut refused, mut in_a_row) = (1, 1);
    for i in 0..1500 {
        if in_a_row == 20 {
            break;
        }
        let body = json!({"event_type": "disk.full", "data": {"i": i, "filler": filler}});
        match create(&client, &served.base, &body).await {
            (201, event) => {
                acked.push(event["event_id"].as_str().unwrap().to_owned());
                in_a_row = 0;
            }
            (503, error) => {
                assert_eq!(error["error"]["code"], "storage_full", "{error}");
                refused += 1;
                in_a_row += 1;
            }
            other => panic!("while full: unexpected answer {other:?}"),
        }
    }
    assert_eq!(in_a_row, 20, "the writes never stopped fitting");
    assert_eq!(total(&client, &served.base).await, acked.len() as u64);
    eprintln!("disk full: {before_full} events fitted, {} in all, {refused} writes refused with 503", acked.len());

    // Space returns: writes resume without a restart.
    set_file_size_limit(served.pid(), libc::RLIM_INFINITY);
    let deadline = Instant::now() + Duration::from_secs(15);
    let resumed = loop {
        match create(&client, &served.base, &json!({"event_type": "disk.space"})).await {
            (201, event) => break event["event_id"].as_str().unwrap().to_owned(),
            (503, _) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            other => panic!("writes did not resume: {other:?}"),
        }
    };
    acked.push(resumed);
    for i in 0..20 {
        let (status, event) =
            create(&client, &served.base, &json!({"event_type": "disk.space", "data": {"i": i}})).await;
        assert_eq!(status, 201, "{event}");
        acked.push(event["event_id"].as_str().unwrap().to_owned());
    }

    // Killed and restarted: every acknowledged event is there, and nothing that was refused.
    served.child.start_kill().unwrap();
    served.child.wait().await.unwrap();
    let served = serve(dir.path(), None).await;
    let mut lost = Vec::new();
    for (i, id) in acked.iter().enumerate() {
        let response = client.get(format!("{}/api/v1/events/{id}", served.base)).send().await.unwrap();
        if response.status() != 200 {
            lost.push(i);
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged events were lost: {lost:?} ({before_full} before the disk filled)",
        lost.len(),
        acked.len()
    );
    assert_eq!(total(&client, &served.base).await, acked.len() as u64, "a refused event was stored");
}

#[tokio::test]
async fn a_database_locked_by_another_process_stops_start_up_with_a_clear_error() {
    use sqlx::Connection as _;

    let dir = tempfile::tempdir().unwrap();
    let mut first = serve(dir.path(), None).await;
    first.child.start_kill().unwrap();
    first.child.wait().await.unwrap();

    // Another program (here: this test) holds an exclusive lock on the file.
    let mut holder = sqlx::SqliteConnection::connect(&db_url(dir.path())).await.unwrap();
    sqlx::query("PRAGMA locking_mode = EXCLUSIVE").execute(&mut holder).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE").execute(&mut holder).await.unwrap();

    let started = Instant::now();
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        command(dir.path())
            .args(["serve", "--addr", "127.0.0.1:0", "--storage-url", &db_url(dir.path())])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output(),
    )
    .await
    .expect("start-up gives up instead of waiting forever")
    .unwrap();
    assert!(!output.status.success(), "a locked database must not start");
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("events.db") && message.contains("locked"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    holder.close().await.unwrap();
}

#[tokio::test]
async fn a_read_only_database_stops_start_up_with_a_clear_error() {
    use std::os::unix::fs::PermissionsExt as _;

    let dir = tempfile::tempdir().unwrap();
    let mut first = serve(dir.path(), None).await;
    // A clean stop: no WAL or shared-memory file left beside the database.
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(first.pid(), libc::SIGTERM) };
    first.child.wait().await.unwrap();
    for name in ["events.db-wal", "events.db-shm", "events.db.lock"] {
        // Gone already after a clean stop (but the lock file); either way they are not there now.
        let _gone = std::fs::remove_file(dir.path().join(name));
    }
    let mode = |path: &Path, mode| std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    let start = async || {
        let mut serve = command(dir.path());
        serve
            .args(["serve", "--addr", "127.0.0.1:0", "--storage-url", &db_url(dir.path())])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // Permissions bind everyone but root: as root, run the server as `nobody`.
        // SAFETY: geteuid(2) has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            serve.as_std_mut().uid(65534).gid(65534);
        }
        let output = tokio::time::timeout(Duration::from_secs(60), serve.output()).await.expect("gives up").unwrap();
        assert!(!output.status.success(), "a read-only database must not start");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    // The file alone is read-only; its folder is writable (by `nobody` too).
    mode(dir.path(), 0o777);
    mode(&dir.path().join("events.db"), 0o444);
    let message = start().await;
    assert!(message.contains("events.db") && message.contains("read-only"), "{message}");
    // The folder is read-only too.
    for name in ["events.db-wal", "events.db-shm", "events.db.lock"] {
        // Whatever the failed start left behind.
        let _gone = std::fs::remove_file(dir.path().join(name));
    }
    mode(dir.path(), 0o555);
    let message = start().await;
    mode(dir.path(), 0o755);
    assert!(message.contains("events.db") && message.contains("ermission denied"), "{message}");
}

/// Opens `GET path` on a raw connection and reads the response head.
async fn open_sse(addr: &str, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "closed before the response head");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head));
    stream
}

/// Stores `batches` × 100 events of 8 KiB and reads them all on `reader`, checking that the seqs come
/// in order without a gap.
async fn ingest_and_follow(client: &reqwest::Client, base: &str, reader: &mut reqwest::Response, batches: usize) {
    let per_batch = 100;
    let filler = "s".repeat(8 * 1024);
    let writer = {
        let (client, base) = (client.clone(), base.to_owned());
        tokio::spawn(async move {
            for b in 0..batches {
                let body: Vec<_> = (0..per_batch)
                    .map(|i| json!({"event_type": "slow.sse", "data": {"b": b, "i": i, "f": filler}}))
                    .collect();
                let response = client.post(format!("{base}/api/v1/events/batch")).json(&body).send().await.unwrap();
                assert_eq!(response.status(), 200);
            }
        })
    };
    let (mut buffer, mut seqs) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(120);
    while seqs.len() < batches * per_batch {
        let chunk = tokio::time::timeout_at(deadline.into(), reader.chunk()).await.expect("the reader is not slowed");
        buffer.extend_from_slice(&chunk.unwrap().expect("stream open"));
        while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
            let frame = String::from_utf8_lossy(&buffer[..end]).into_owned();
            buffer.drain(..end + 2);
            if let Some(id) = frame.lines().find_map(|l| l.strip_prefix("id:")) {
                seqs.push(id.trim().parse::<i64>().unwrap());
            }
        }
    }
    writer.await.unwrap();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "the reader's seqs have a gap or repeat");
}

#[tokio::test]
async fn an_sse_client_that_reads_nothing_costs_bounded_memory_and_slows_no_one() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(dir.path(), None).await;
    let client = reqwest::Client::new();
    let mut reader = client.get(format!("{}/api/v1/events/live", served.base)).send().await.unwrap();
    assert_eq!(reader.status(), 200);
    // 6,000 events of 8 KiB (~48 MiB of frames) first without the silent client: SQLite's caches and
    // the allocator reach their size.
    ingest_and_follow(&client, &served.base, &mut reader, 60).await;
    let before = served.rss_kib();
    // Then the same again with a client that never reads after the head: its socket buffers fill and
    // stay full, and the reader still gets every event, in order.
    let _silent = open_sse(&served.addr, "/api/v1/events/live").await;
    ingest_and_follow(&client, &served.base, &mut reader, 60).await;
    let grown = served.rss_kib().saturating_sub(before);
    eprintln!("silent SSE client: server RSS {before} KiB, grew {grown} KiB while ~48 MiB of frames were due to it");
    // Before each feed had its own bounded buffer, the silent client pinned the bus's 4,096 newest
    // events (~37 MiB here).
    assert!(grown < 16 * 1024, "the server holds the silent client's frames: RSS grew {grown} KiB");
}

#[tokio::test]
async fn a_thousand_idle_sse_clients_cost_little_memory_each() {
    // Each client is a socket here and one in the server.
    let mut files = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit on this process with a valid pointer.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut files);
        files.rlim_cur = files.rlim_max.min(8192);
        libc::setrlimit(libc::RLIMIT_NOFILE, &files);
    }
    assert!(files.rlim_cur >= 2200, "the open-files limit ({}) is too low for this test", files.rlim_cur);
    let dir = tempfile::tempdir().unwrap();
    let served = serve(dir.path(), None).await;
    // Warm up: one client through the whole path first, so what is measured is per client.
    let warm = open_sse(&served.addr, "/api/v1/events/live").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = served.rss_kib();

    const CLIENTS: usize = 1000;
    let mut clients = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        clients.push(open_sse(&served.addr, "/api/v1/events/live").await);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = served.rss_kib();
    let per_client = after.saturating_sub(before) as f64 / CLIENTS as f64;
    eprintln!("{CLIENTS} idle SSE clients: server RSS {before} KiB -> {after} KiB, {per_client:.1} KiB per client");
    assert!(per_client < 64.0, "{per_client:.1} KiB per idle SSE client");

    // The server still answers, and a new event reaches the idle clients.
    let client = reqwest::Client::new();
    let (status, _) = create(&client, &served.base, &json!({"event_type": "idle.check"})).await;
    assert_eq!(status, 201);
    for index in [0, CLIENTS - 1] {
        let stream = &mut clients[index];
        let mut seen = Vec::new();
        let mut buffer = vec![0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains("idle.check") {
            let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer)).await.unwrap().unwrap();
            assert!(n > 0, "an idle client was dropped");
            seen.extend_from_slice(&buffer[..n]);
        }
    }
    drop(warm);
}
