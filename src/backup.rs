//! Backups while the daemon runs (docs/operations.md, "Backups"): a
//! snapshot of the store in one read transaction, written as a new
//! embedded store file, checked entry by entry, then handed out as an open
//! file that is already gone from its directory: a client that hangs up
//! mid-download, or a second backup, leaves nothing behind.

use std::fs::File;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, Utc};
use paywatch_state::Store;
use sha2::{Digest, Sha256};

/// Snapshot files being written are named `backup-<random>.partial` in the
/// state directory; one left by a kill -9 is removed by the next backup.
const PARTIAL_PREFIX: &str = "backup-";
const PARTIAL_SUFFIX: &str = ".partial";

/// A finished snapshot: an open file, its length and SHA-256.
pub struct Snapshot {
    pub file: File,
    pub len: u64,
    pub sha256: String,
    /// Entries in all tables, as copied and verified.
    pub entries: u64,
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
    let made = snapshot_file(store, &path);
    // Unlinked whatever happened: an open handle keeps the data readable.
    let _ = std::fs::remove_file(&path);
    let (mut file, entries) = made?;
    let (len, sha256) = digest(&mut file)?;
    file.rewind()?;
    Ok(Snapshot {
        file,
        len,
        sha256,
        entries,
        taken_at,
    })
}

fn snapshot_file(store: &Store, path: &Path) -> anyhow::Result<(File, u64)> {
    let counts = store
        .snapshot_to(path)
        .with_context(|| format!("cannot write a snapshot to {}", path.display()))?;
    let file = File::open(path).with_context(|| format!("cannot reopen the snapshot {}", path.display()))?;
    Ok((file, counts.iter().map(|c| c.entries).sum()))
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

/// `FILE.partial` beside `file`: where a backup or restore writes before it
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
