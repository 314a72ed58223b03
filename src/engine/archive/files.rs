//! The archive's files: where an event's line goes (`events/YYYY/MM/DD/HH/<instance>_<first seq>.jsonl`,
//! the UTC hour of its `timestamp`) and how a file is written so that it is whole or absent: a
//! temporary name beside it (hidden from the `*.jsonl` glob), synced, renamed, and its folder synced,
//! before the store hears of it. Blocking: called off the async threads.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::domain::Timestamp;
use crate::storage::{ArchiveLine, ArchivePart};

/// The folder under the archive folder that holds the partitions.
pub const EVENTS: &str = "events";

/// The hour partition of a time: `events/YYYY/MM/DD/HH`.
pub fn partition(timestamp: Timestamp) -> String {
    timestamp.to_datetime().format("events/%Y/%m/%d/%H").to_string()
}

/// Splits lines (in `timestamp`, seq order) into one file per hour, each named after its lowest seq
/// and the instance writing it: names no other run can take, and the same ones when a stopped run's
/// plan is written again.
pub fn plan(lines: &[ArchiveLine], instance_id: &str) -> Vec<ArchivePart> {
    const HOUR_MICROS: i64 = 3_600_000_000;
    // By the hour's number, formatted once a file: not once a line.
    let mut parts: Vec<(i64, Vec<i64>)> = Vec::new();
    for line in lines {
        let hour = line.timestamp.as_micros().div_euclid(HOUR_MICROS);
        match parts.iter_mut().rev().find(|(h, _)| *h == hour) {
            Some((_, seqs)) => seqs.push(line.seq),
            None => parts.push((hour, vec![line.seq])),
        }
    }
    parts
        .into_iter()
        .map(|(hour, seqs)| {
            let first = seqs.iter().min().copied().unwrap_or_default();
            let folder = partition(Timestamp::from_micros(hour * HOUR_MICROS));
            ArchivePart { path: format!("{folder}/{instance_id}_{first}.jsonl"), seqs }
        })
        .collect()
}

/// Checks that the archive folder can be written (creating it when missing) by writing and removing
/// a probe file; the error says what failed.
pub fn check_writable(dir: &Path) -> Result<(), String> {
    let events = dir.join(EVENTS);
    fs::create_dir_all(&events).map_err(|e| format!("cannot create {}: {e}", events.display()))?;
    let probe = events.join(format!(".probe-{}", std::process::id()));
    File::create(&probe)
        .and_then(|mut f| f.write_all(b"probe"))
        .map_err(|e| format!("cannot write in {}: {e}", events.display()))?;
    // Only a probe: a leftover one is harmless and hidden from the glob.
    let _ = fs::remove_file(&probe);
    Ok(())
}

/// Writes one file of the plan: `lines` (each without its newline) into `dir/part.path`, whole or not
/// at all. On a failure (a full disk) the temporary file is removed and the error returned.
pub fn write(dir: &Path, part: &ArchivePart, lines: &[&str]) -> io::Result<()> {
    let path = dir.join(&part.path);
    let folder = path.parent().map(Path::to_path_buf).unwrap_or_else(|| dir.to_path_buf());
    create_synced(dir, &folder)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = folder.join(format!(".{name}.tmp"));
    let written = write_synced(&temporary, lines);
    if let Err(error) = written {
        // The partial file goes; its removal failing too (the folder vanished) leaves nothing to do.
        let _ = fs::remove_file(&temporary);
        return Err(error);
    }
    if let Err(error) = fs::rename(&temporary, &path) {
        let _ = fs::remove_file(&temporary);
        return Err(error);
    }
    // The rename is durable only once the folder's entry is.
    sync_dir(&folder)
}

fn write_synced(path: &Path, lines: &[&str]) -> io::Result<()> {
    let file = File::create(path)?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    for line in lines {
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
    }
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()
}

/// Creates `folder` (under `root`) and the folders above it that are missing, syncing the parent of
/// each one created so that the new entries survive a crash.
fn create_synced(root: &Path, folder: &Path) -> io::Result<()> {
    if folder.is_dir() {
        return Ok(());
    }
    let mut missing: Vec<PathBuf> = Vec::new();
    let mut at = Some(folder);
    while let Some(dir) = at.filter(|d| !d.is_dir()) {
        missing.push(dir.to_path_buf());
        if dir == root {
            break;
        }
        at = dir.parent();
    }
    for dir in missing.iter().rev() {
        match fs::create_dir(dir) {
            Ok(()) => {}
            // Another writer made it meanwhile.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::EventStatus;

    fn line(seq: i64, at: &str) -> ArchiveLine {
        ArchiveLine {
            seq,
            timestamp: Timestamp::parse(at).unwrap(),
            status: EventStatus::Processed,
            line: format!("{{\"seq\":{seq}}}"),
        }
    }

    #[test]
    fn lines_go_to_their_hour_in_files_named_by_their_lowest_seq() {
        let lines =
            [line(7, "2026-03-04T05:59:59Z"), line(3, "2026-03-04T05:59:59.5Z"), line(9, "2026-03-04T06:00:00Z")];
        let parts = plan(&lines, "i1");
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], ArchivePart { path: "events/2026/03/04/05/i1_3.jsonl".into(), seqs: vec![7, 3] });
        assert_eq!(parts[1], ArchivePart { path: "events/2026/03/04/06/i1_9.jsonl".into(), seqs: vec![9] });
    }

    #[test]
    fn a_file_is_written_whole_and_a_failed_one_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let part = ArchivePart { path: "events/2026/01/01/00/x_1.jsonl".into(), seqs: vec![1, 2] };
        write(dir.path(), &part, &["{\"a\":1}", "{\"a\":2}"]).unwrap();
        let text = fs::read_to_string(dir.path().join(&part.path)).unwrap();
        assert_eq!(text, "{\"a\":1}\n{\"a\":2}\n");
        // Writing the same part again replaces it (a stopped run finished by the next one).
        write(dir.path(), &part, &["{\"a\":1}", "{\"a\":2}"]).unwrap();
        assert_eq!(fs::read_to_string(dir.path().join(&part.path)).unwrap(), text);

        // A full disk: the temporary file is /dev/full, where every write fails with ENOSPC.
        let full = ArchivePart { path: "events/2026/01/01/00/x_3.jsonl".into(), seqs: vec![3] };
        let folder = dir.path().join("events/2026/01/01/00");
        std::os::unix::fs::symlink("/dev/full", folder.join(".x_3.jsonl.tmp")).unwrap();
        let error = write(dir.path(), &full, &["{\"a\":3}"; 1000]).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(28), "ENOSPC: {error}");
        let left: Vec<_> = fs::read_dir(&folder).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, ["x_1.jsonl"], "the partial file is removed");
    }
}
