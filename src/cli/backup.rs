//! `paywatch backup` and `paywatch restore` (docs/operations.md, "Backups").

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use paywatch_state::{RestoreFloors, RestoreReport, Store};
use sha2::{Digest, Sha256};

use super::client::{Client, error_of};
use crate::backup::{partial_path, sync_dir};
use crate::config::{Config, StoreConfig};
use crate::state_dir::STORE_FILE;

/// How long a backup download may take at most.
const DOWNLOAD_LIMIT: Duration = Duration::from_secs(3600);

/// `backup --to FILE`: from the running daemon's API; when nothing answers
/// there, from the store itself (which fails if a daemon holds it).
pub(super) async fn backup(client: &Client, config_path: &Path, to: &Path) -> anyhow::Result<()> {
    let partial = partial_path(to);
    let _ = std::fs::remove_file(&partial);
    let written = match client.post_raw("/v1/backup", DOWNLOAD_LIMIT).await {
        Ok(resp) => download(resp, &partial).await,
        Err(e) if e.is_connect() => {
            eprintln!(
                "paywatch: nothing answers at {} ({e}); taking the backup from the store directly",
                client.base()
            );
            let config = Config::load(config_path)
                .with_context(|| format!("invalid configuration {}", config_path.display()))?;
            tokio::task::spawn_blocking(move || offline_snapshot(&config, &partial)).await?
        }
        Err(e) => Err(anyhow::anyhow!("cannot reach paywatch at {}: {e}", client.base())),
    };
    let written = match written {
        Ok(w) => w,
        Err(e) => {
            let _ = std::fs::remove_file(partial_path(to));
            return Err(e);
        }
    };
    std::fs::rename(partial_path(to), to).with_context(|| format!("cannot rename into {}", to.display()))?;
    sync_dir(
        to.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
    )?;
    println!(
        "backup written to {}: {} bytes, {} entries, sha256 {}",
        to.display(),
        written.len,
        written.entries,
        written.sha256
    );
    Ok(())
}

struct Written {
    len: u64,
    sha256: String,
    entries: String,
}

/// A file only its owner reads: a backup holds every record.
fn create_private(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))
}

/// Streams the daemon's snapshot into `partial`, checking its length and
/// SHA-256 against what the daemon said they are.
async fn download(mut resp: reqwest::Response, partial: &Path) -> anyhow::Result<Written> {
    if !resp.status().is_success() {
        return Err(error_of(resp).await);
    }
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (Some(expected_sha), Some(entries)) = (header("x-paywatch-backup-sha256"), header("x-paywatch-backup-entries"))
    else {
        anyhow::bail!("the answer is not a paywatch backup (no X-Paywatch-Backup-Sha256)");
    };
    let expected_len = resp.content_length();
    let mut file = create_private(partial)?;
    let (mut hasher, mut len) = (Sha256::new(), 0u64);
    while let Some(chunk) = resp.chunk().await.context("the download broke off; nothing was kept")? {
        hasher.update(&chunk);
        len += chunk.len() as u64;
        file.write_all(&chunk)
            .with_context(|| format!("cannot write {}", partial.display()))?;
    }
    let sha256 = hex::encode(hasher.finalize());
    if sha256 != expected_sha || expected_len.is_some_and(|l| l != len) {
        anyhow::bail!(
            "the download does not match what paywatch sent ({len} bytes, sha256 {sha256}; expected {} bytes, sha256 {expected_sha}); nothing was kept",
            expected_len.map_or("?".to_string(), |l| l.to_string())
        );
    }
    file.sync_all()?;
    Ok(Written { len, sha256, entries })
}

/// The snapshot taken from the configured store itself (no daemon running).
fn offline_snapshot(config: &Config, partial: &Path) -> anyhow::Result<Written> {
    let store = crate::state_dir::open_store(config)?;
    let counts = store.snapshot_to(partial)?;
    let mut file = std::fs::File::open(partial)?;
    let (len, sha256) = crate::backup::digest(&mut file)?;
    std::fs::set_permissions(partial, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(Written {
        len,
        sha256,
        entries: counts.iter().map(|c| c.entries).sum::<u64>().to_string(),
    })
}

/// What `restore` was asked for.
pub(super) struct RestoreArgs {
    pub config: PathBuf,
    pub from: PathBuf,
    pub seq_floor: Option<u64>,
    pub derive_ahead: u32,
}

pub(super) fn restore(args: &RestoreArgs) -> ExitCode {
    let config = match super::load_config(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match restore_into(&config, args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("paywatch: restore failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn restore_into(config: &Config, args: &RestoreArgs) -> anyhow::Result<()> {
    if !args.from.is_file() {
        anyhow::bail!("{} is not a file", args.from.display());
    }
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("cannot create state_dir {}", config.state_dir.display()))?;
    // The snapshot is copied, and the copy opened and prepared: the backup
    // file itself is never written to.
    let staging = config.state_dir.join(format!("{STORE_FILE}.restoring"));
    let _ = std::fs::remove_file(&staging);
    std::fs::copy(&args.from, &staging)
        .with_context(|| format!("cannot copy {} to {}", args.from.display(), staging.display()))?;
    let prepared = prepare(config, args, &staging);
    let outcome = prepared.and_then(|(report, replaced)| match &config.store {
        StoreConfig::Embedded => put_in_place(config, &staging, replaced).map(|kept| (report, kept)),
        StoreConfig::Postgres(_) => into_postgres(config, &staging).map(|()| (report, None)),
    });
    let _ = std::fs::remove_file(&staging);
    let (report, kept) = outcome?;
    print_report(config, &args.from, &report, kept.as_deref());
    Ok(())
}

/// Opens the copy (checking it is a store this build can run) and raises
/// it past what the replaced store had reached, when that store is there.
/// Returns whether an embedded store is being replaced.
fn prepare(config: &Config, args: &RestoreArgs, staging: &Path) -> anyhow::Result<(RestoreReport, bool)> {
    let snapshot = Store::open(staging).with_context(|| format!("{} is not a paywatch store", args.from.display()))?;
    let (counters, replaced) = match &config.store {
        StoreConfig::Embedded => replaced_counters(&config.state_dir.join(STORE_FILE))?,
        // A database is restored into only when empty: nothing to read.
        StoreConfig::Postgres(_) => (Default::default(), false),
    };
    if counters.is_empty() && args.seq_floor.is_none() {
        anyhow::bail!(
            "the store this replaces cannot be read, so the events your shop has already seen are unknown: \
             pass --seq-floor with one more than the highest seq it has seen (the newest event it \
             received, or its feed cursor), so that the events after the restore are not taken for old ones"
        );
    }
    let floors = RestoreFloors {
        counters,
        next_seq_at_least: args.seq_floor,
        derive_ahead: args.derive_ahead,
    };
    let policies: Vec<_> = config.assets.iter().map(|a| a.policy.clone()).collect();
    let report = snapshot.prepare_restored(&policies, &floors)?;
    Ok((report, replaced))
}

/// The counters of the embedded store being replaced, if it is there and
/// readable; refuses while a daemon holds it.
fn replaced_counters(live: &Path) -> anyhow::Result<(std::collections::BTreeMap<String, u64>, bool)> {
    if !live.exists() {
        return Ok((Default::default(), false));
    }
    match Store::open(live) {
        Ok(store) => Ok((store.restore_floors()?, true)),
        Err(e) if e.is_in_use() => anyhow::bail!(
            "{} is in use: stop paywatch first (systemctl stop paywatch)",
            live.display()
        ),
        Err(e) => {
            eprintln!(
                "paywatch: the store being replaced, {}, cannot be read ({e}); it is kept aside",
                live.display()
            );
            Ok((Default::default(), true))
        }
    }
}

/// Moves the replaced store aside (kept, never deleted) and the prepared
/// copy into its place. Returns where the replaced store went.
fn put_in_place(config: &Config, staging: &Path, replaced: bool) -> anyhow::Result<Option<PathBuf>> {
    let live = config.state_dir.join(STORE_FILE);
    let kept = if replaced {
        let kept = config.state_dir.join(format!(
            "{STORE_FILE}.replaced-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
        ));
        std::fs::rename(&live, &kept).with_context(|| format!("cannot move {} aside", live.display()))?;
        Some(kept)
    } else {
        None
    };
    std::fs::rename(staging, &live).with_context(|| format!("cannot move the restored store to {}", live.display()))?;
    sync_dir(&config.state_dir)?;
    Ok(kept)
}

/// Copies the prepared snapshot into the configured database, which must
/// hold nothing yet.
fn into_postgres(config: &Config, staging: &Path) -> anyhow::Result<()> {
    let source = Store::open(staging)?;
    let target: Arc<Store> = crate::state_dir::open_store(config)?;
    source
        .copy_into(&target)
        .context("cannot copy the snapshot into the database (restore only into an empty one)")?;
    Ok(())
}

fn print_report(config: &Config, from: &Path, report: &RestoreReport, kept: Option<&Path>) {
    let target = match &config.store {
        StoreConfig::Embedded => config.state_dir.join(STORE_FILE).display().to_string(),
        StoreConfig::Postgres(options) => options.display.clone(),
    };
    println!("restored {} into {target}", from.display());
    if let Some(kept) = kept {
        println!("  the store it replaced is kept as {}", kept.display());
    }
    println!(
        "  events continue at seq {} (the snapshot's newest is {})",
        report.next_seq, report.snapshot_seq
    );
    for (asset, height) in &report.cursors {
        println!("  {asset}: rescans from height {height}");
    }
    for (asset, count) in &report.addresses_watched {
        println!("  {asset}: {count} address(es) derived after the snapshot are watched and never handed out again");
    }
    println!("start paywatch: payments since the snapshot are found again by the rescan");
}
