//! Reading the archive back: its hour partitions with the files, events and time range of each, as
//! `eventdeck archive --list` shows them, and its size for statistics. Reads the folder, not the
//! store. Blocking: called off the async threads.

use std::fs;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::files::EVENTS;
use crate::domain::Timestamp;

/// One hour of the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    /// `events/YYYY/MM/DD/HH`, relative to the archive folder.
    pub path: String,
    pub files: u64,
    pub events: u64,
    pub bytes: u64,
    /// The lowest and highest `timestamp` of its events.
    pub first: Option<Timestamp>,
    pub last: Option<Timestamp>,
}

/// The partitions under `dir`, oldest first. A line that is not an event is an error naming the file
/// and line.
pub fn partitions(dir: &Path) -> Result<Vec<Partition>, String> {
    let mut partitions = Vec::new();
    for hour in hours(dir).map_err(|e| format!("cannot read the archive {}: {e}", dir.display()))? {
        partitions.push(partition(dir, &hour)?);
    }
    Ok(partitions)
}

/// The archive's files (`*.jsonl`) and their total size in bytes; (0, 0) when there is no archive.
pub fn size(dir: &Path) -> (u64, u64) {
    let mut files = 0;
    let mut bytes = 0;
    for hour in hours(dir).unwrap_or_default() {
        for (_, len) in jsonl_files(&dir.join(&hour)).unwrap_or_default() {
            files += 1;
            bytes += len;
        }
    }
    (files, bytes)
}

/// The hour folders, relative to `dir`, in order.
fn hours(dir: &Path) -> io::Result<Vec<String>> {
    let mut found = Vec::new();
    let root = dir.join(EVENTS);
    if !root.is_dir() {
        return Ok(found);
    }
    // Four levels: year, month, day, hour.
    let mut level = vec![EVENTS.to_owned()];
    for _ in 0..4 {
        let mut next = Vec::new();
        for relative in &level {
            for entry in fs::read_dir(dir.join(relative))? {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if entry.file_type()?.is_dir() && name.bytes().all(|b| b.is_ascii_digit()) {
                    next.push(format!("{relative}/{name}"));
                }
            }
        }
        next.sort();
        level = next;
    }
    found.extend(level);
    Ok(found)
}

/// The `*.jsonl` files of a folder with their sizes, in name order (temporary files are hidden).
fn jsonl_files(folder: &Path) -> io::Result<Vec<(String, u64)>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(folder)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".jsonl") && !name.starts_with('.') {
            files.push((name, entry.metadata()?.len()));
        }
    }
    files.sort();
    Ok(files)
}

/// Only what the listing reads of a line.
#[derive(Deserialize)]
struct Stamp {
    timestamp: Timestamp,
}

fn partition(dir: &Path, hour: &str) -> Result<Partition, String> {
    let folder = dir.join(hour);
    let files = jsonl_files(&folder).map_err(|e| format!("cannot read {}: {e}", folder.display()))?;
    let mut partition =
        Partition { path: hour.to_owned(), files: files.len() as u64, events: 0, bytes: 0, first: None, last: None };
    for (name, len) in files {
        partition.bytes += len;
        let path = folder.join(&name);
        let file = fs::File::open(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        for (number, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            if line.is_empty() {
                continue;
            }
            let stamp: Stamp = serde_json::from_str(&line)
                .map_err(|e| format!("{} line {}: not an archived event: {e}", path.display(), number + 1))?;
            partition.events += 1;
            partition.first = Some(partition.first.map_or(stamp.timestamp, |t| t.min(stamp.timestamp)));
            partition.last = Some(partition.last.map_or(stamp.timestamp, |t| t.max(stamp.timestamp)));
        }
    }
    Ok(partition)
}
