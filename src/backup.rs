//! Backups while the daemon runs (docs/operations.md, "Backups"): a
//! snapshot of the store in one read transaction, written as a new
//! embedded store file and checked entry by entry. The daemon hands it out
//! as an open file already gone from its directory, so a client that hangs
//! up mid-download leaves nothing behind; the command line writes it where
//! it was asked to when no daemon runs.

use std::fs::File;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use paywatch_state::Store;
use sha2::{Digest, Sha256};

/// Snapshot files being written are named `backup-<random>.partial` in the
/// state directory; one left by a kill -9 is removed by the next backup.
const PARTIAL_PREFIX: &str = "backup-";
const PARTIAL_SUFFIX: &str = ".partial";

/// The longest a backup download may take once the snapshot is written:
/// the daemon cuts a slower client off, so that the unlinked copy does not
/// hold room on the store's disk for long.
pub const LONGEST_DOWNLOAD: Duration = Duration::from_secs(3600);

/// What a snapshot holds, as its reader can check it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub len: u64,
    /// Hex SHA-256 of the file.
    pub sha256: String,
    /// Entries in all tables, as copied and verified.
    pub entries: u64,
}

/// A finished snapshot: an open file at its start, and what it holds.
pub struct Snapshot {
    pub file: File,
    pub summary: Summary,
    pub taken_at: DateTime<Utc>,
}

/// Writes a snapshot of `store` in `dir` and returns it unlinked.
pub fn take_snapshot(store: &Store, dir: &Path) -> anyhow::Result<Snapshot> {
    // A PostgreSQL store may run without the directory ever being made.
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    remove_stale_partials(dir);
    let path = dir.join(format!(
        "{PARTIAL_PREFIX}{:08x}{PARTIAL_SUFFIX}",
        paywatch_state::ids::random_u32()
    ));
    let taken_at = Utc::now();
    let made = write_snapshot(store, &path);
    // Unlinked whatever happened: an open handle keeps the data readable.
    let _ = std::fs::remove_file(&path);
    let (file, summary) = made?;
    Ok(Snapshot {
        file,
        summary,
        taken_at,
    })
}

/// Writes a snapshot of `store` to `path` (a new file, 0600) and returns it
/// open at its start, with what it holds.
pub fn write_snapshot(store: &Store, path: &Path) -> anyhow::Result<(File, Summary)> {
    let counts = store
        .snapshot_to(path)
        .with_context(|| format!("cannot write a snapshot to {}", path.display()))?;
    let mut file = File::open(path).with_context(|| format!("cannot reopen the snapshot {}", path.display()))?;
    let (len, sha256) = digest(&mut file)?;
    file.rewind()?;
    let entries = counts.iter().map(|c| c.entries).sum();
    Ok((file, Summary { len, sha256, entries }))
}

/// The length and hex SHA-256 of what `reader` holds from where it is.
pub fn digest(reader: &mut impl Read) -> std::io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut len = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    Ok((len, hex::encode(hasher.finalize())))
}

fn remove_stale_partials(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(PARTIAL_PREFIX) && name.ends_with(PARTIAL_SUFFIX) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// `FILE.partial` beside `file`: where `paywatch backup` writes before it
/// renames into place.
pub fn partial_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(PARTIAL_SUFFIX);
    file.with_file_name(name)
}

/// Makes a rename in `dir` durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}
