//! The publisher's spool: a JSON-lines file holding every line read until the server acknowledged it,
//! so a publisher that stopped (killed, crashed, server down) resends what it holds when started again.
//!
//! Records are appended: `{"id", "line", "auto_key", "event"}` when a line is read, `{"ack": id}` once
//! every line up to `id` is settled (stored, a duplicate, or refused by the server). Lines are sent in
//! id order, one batch at a time, so one high-water mark says what is settled.
//!
//! Crash points: a line is written before it is sent and synced before its batch goes out, so a sent
//! line is always in the file; the ack is written only after the server answered, so a crash between
//! the two sends the batch again, which the idempotency key every line carries makes harmless. A torn
//! last record (a crash in the middle of a write) is ignored. Opening compacts the file (unsettled lines
//! to a temporary file, synced, renamed over it) and `<spool>.lock` keeps a second publisher out.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Once everything is settled and the file is this big, it is emptied.
const TRUNCATE_ABOVE: u64 = 1 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum Record {
    Line(Entry),
    Ack { ack: u64 },
}

/// A line in the spool: its id there, its line number in the input that was read, whether the publisher
/// gave it its idempotency key, and the event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub id: u64,
    pub line: u64,
    pub auto_key: bool,
    pub event: Value,
}

pub struct Spool {
    path: PathBuf,
    file: File,
    /// Held for as long as the spool is open: the lock is released when it is dropped (or the process dies).
    _lock: File,
    next_id: u64,
    settled: u64,
    size: u64,
}

impl Spool {
    /// Opens (or creates) the spool at `path`, answering the lines an earlier publisher left unsettled,
    /// in the order they were read.
    pub fn open(path: &Path) -> anyhow::Result<(Self, Vec<Entry>)> {
        let lock_path = with_suffix(path, ".lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("cannot open the spool's lock file {}", lock_path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                bail!(
                    "the spool {} is in use by another publisher: give each publisher its own --spool",
                    path.display()
                )
            }
            Err(TryLockError::Error(error)) => {
                return Err(error).with_context(|| format!("cannot lock {}", lock_path.display()));
            }
        }
        let pending = match File::open(path) {
            Ok(file) => read(file, path)?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(error) => return Err(error).with_context(|| format!("cannot read the spool {}", path.display())),
        };
        let size = rewrite(path, &pending)?;
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open the spool {}", path.display()))?;
        let next_id = pending.last().map_or(1, |e| e.id + 1);
        let spool = Self { path: path.to_owned(), file, _lock: lock, next_id, settled: next_id - 1, size };
        Ok((spool, pending))
    }

    /// Writes a line just read; it is synced with its batch, before the batch is sent.
    pub fn push(&mut self, line: u64, auto_key: bool, event: Value) -> anyhow::Result<Entry> {
        let entry = Entry { id: self.next_id, line, auto_key, event };
        self.append(&Record::Line(entry.clone()))?;
        self.next_id += 1;
        Ok(entry)
    }

    /// Makes every line written so far durable: called before a batch holding them is sent.
    pub fn sync(&self) -> anyhow::Result<()> {
        self.file.sync_data().with_context(|| format!("cannot sync the spool {}", self.path.display()))
    }

    /// Every line up to `id` is settled. Not synced: losing it only sends those lines again.
    pub fn settle(&mut self, id: u64) -> anyhow::Result<()> {
        self.append(&Record::Ack { ack: id })?;
        self.settled = self.settled.max(id);
        if self.settled + 1 == self.next_id && self.size > TRUNCATE_ABOVE {
            // Nothing in it is needed any more; a crash while emptying leaves either all or nothing.
            self.file.set_len(0).with_context(|| format!("cannot empty the spool {}", self.path.display()))?;
            self.size = 0;
        }
        Ok(())
    }

    /// Lines written and not settled.
    pub fn unsettled(&self) -> u64 {
        self.next_id - 1 - self.settled
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes the spool, removing the file when nothing in it is unsettled.
    pub fn close(self) -> anyhow::Result<()> {
        if self.unsettled() == 0 {
            std::fs::remove_file(&self.path)
                .with_context(|| format!("cannot remove the settled spool {}", self.path.display()))?;
        }
        Ok(())
    }

    fn append(&mut self, record: &Record) -> anyhow::Result<()> {
        let mut bytes = serde_json::to_vec(record).context("cannot encode a spool record")?;
        bytes.push(b'\n');
        // One write per record: what a killed process wrote is in the file, whatever followed it.
        self.file.write_all(&bytes).with_context(|| format!("cannot write the spool {}", self.path.display()))?;
        self.size += bytes.len() as u64;
        Ok(())
    }
}

/// The unsettled lines of a spool file. A last record without its newline is a write a crash cut short:
/// it is dropped (its line was never sent). Any other unreadable record is an error.
fn read(file: File, path: &Path) -> anyhow::Result<Vec<Entry>> {
    let mut reader = BufReader::new(file);
    let (mut entries, mut settled, mut number) = (Vec::new(), 0, 0);
    let mut text = String::new();
    loop {
        text.clear();
        let read = reader.read_line(&mut text).with_context(|| format!("cannot read the spool {}", path.display()))?;
        if read == 0 {
            break;
        }
        number += 1;
        let complete = text.ends_with('\n');
        match serde_json::from_str::<Record>(text.trim_end()) {
            Ok(Record::Line(entry)) => entries.push(entry),
            Ok(Record::Ack { ack }) => settled = settled.max(ack),
            Err(_) if !complete => break,
            Err(error) => bail!(
                "the spool {} is damaged at line {number} ({error}): move it away to start afresh, or repair that line",
                path.display()
            ),
        }
    }
    entries.retain(|e| e.id > settled);
    Ok(entries)
}

/// Replaces the spool with just `pending`, through a synced temporary file and a rename; answers its size.
fn rewrite(path: &Path, pending: &[Entry]) -> anyhow::Result<u64> {
    let temporary = with_suffix(path, ".tmp");
    let mut bytes = Vec::new();
    for entry in pending {
        serde_json::to_writer(&mut bytes, &Record::Line(entry.clone())).context("cannot encode a spool record")?;
        bytes.push(b'\n');
    }
    let mut file =
        File::create(&temporary).with_context(|| format!("cannot write the spool {}", temporary.display()))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("cannot replace the spool {}", path.display()))?;
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(folder).and_then(|f| f.sync_all()).with_context(|| format!("cannot sync {}", folder.display()))?;
    Ok(bytes.len() as u64)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn unsettled_lines_survive_a_reopen_and_settled_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.spool");
        let (mut spool, pending) = Spool::open(&path).unwrap();
        assert!(pending.is_empty());
        for line in 1..=5 {
            spool.push(line, true, json!({"event_type": "a.b", "n": line})).unwrap();
        }
        spool.sync().unwrap();
        spool.settle(2).unwrap();
        assert_eq!(spool.unsettled(), 3);
        drop(spool);

        let (mut spool, pending) = Spool::open(&path).unwrap();
        assert_eq!(pending.iter().map(|e| (e.id, e.line)).collect::<Vec<_>>(), [(3, 3), (4, 4), (5, 5)]);
        assert_eq!(pending[0].event, json!({"event_type": "a.b", "n": 3}));
        let next = spool.push(1, false, json!({})).unwrap();
        assert_eq!(next.id, 6, "ids go on after the ones kept");
        spool.settle(6).unwrap();
        spool.close().unwrap();
        assert!(!path.exists(), "a settled spool is removed");
    }

    #[test]
    fn a_torn_last_record_is_dropped_and_a_damaged_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let good = serde_json::to_string(&Record::Line(Entry { id: 1, line: 9, auto_key: true, event: json!({}) }));
        std::fs::write(&path, format!("{}\n{{\"id\": 2, \"li", good.unwrap())).unwrap();
        let (_spool, pending) = Spool::open(&path).unwrap();
        assert_eq!(pending.len(), 1);
        drop(_spool);

        std::fs::write(&path, "garbage\n{\"ack\": 1}\n").unwrap();
        let error = Spool::open(&path).err().unwrap().to_string();
        assert!(error.contains("damaged at line 1"), "{error}");
    }

    #[test]
    fn a_second_publisher_is_kept_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let (_first, _) = Spool::open(&path).unwrap();
        let error = Spool::open(&path).err().unwrap().to_string();
        assert!(error.contains("in use by another publisher"), "{error}");
    }
}
