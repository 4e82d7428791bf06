//! `paywatch backup` and `paywatch restore` (docs/operations.md, "Backups").

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use paywatch_state::{RestoreFloors, RestoreReport, Store};
use sha2::{Digest, Sha256};

use super::client::{Client, error_of};
use crate::backup::{LONGEST_DOWNLOAD, Summary, partial_path, sync_dir, write_snapshot};
use crate::config::{Config, StoreConfig};
use crate::state_dir::STORE_FILE;

/// `backup --to FILE`: from the running daemon's API; when nothing answers
/// there, from the store itself (which fails if a daemon holds it).
pub(super) async fn backup(client: &Client, config_path: &Path, to: &Path) -> anyhow::Result<()> {
    let partial = partial_path(to);
    let _ = std::fs::remove_file(&partial);
    // The daemon first writes the snapshot, then allows the download
    // `LONGEST_DOWNLOAD`: as long again for the writing.
    let written = match client.post_raw("/v1/backup", 2 * LONGEST_DOWNLOAD).await {
        Ok(resp) => download(resp, &partial).await,
        Err(e) if e.is_connect() => {
            eprintln!(
                "paywatch: nothing answers at {} ({e}); taking the backup from the store directly",
                client.base()
            );
            let config = Config::load(config_path)
                .with_context(|| format!("invalid configuration {}", config_path.display()))?;
            let into = partial.clone();
            tokio::task::spawn_blocking(move || offline_snapshot(&config, &into)).await?
        }
        Err(e) => Err(anyhow::anyhow!("cannot reach paywatch at {}: {e}", client.base())),
    };
    let renamed = written.and_then(|summary| {
        std::fs::rename(&partial, to)
            .with_context(|| format!("cannot rename into {}", to.display()))
            .map(|()| summary)
    });
    let summary = match renamed {
        Ok(summary) => summary,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    sync_dir(
        to.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
    )?;
    println!(
        "backup written to {}: {} bytes, {} entries, sha256 {}",
        to.display(),
        summary.len,
        summary.entries,
        summary.sha256
    );
    Ok(())
}

/// Streams the daemon's snapshot into `partial` (a new file, 0600: a backup
/// holds every record), checking its length and SHA-256 against what the
/// daemon said they are.
async fn download(mut resp: reqwest::Response, partial: &Path) -> anyhow::Result<Summary> {
    if !resp.status().is_success() {
        return Err(error_of(resp).await);
    }
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (Some(expected_sha), Some(entries)) = (
        header("x-paywatch-backup-sha256"),
        header("x-paywatch-backup-entries").and_then(|e| e.parse::<u64>().ok()),
    ) else {
        anyhow::bail!("the answer is not a paywatch backup (no X-Paywatch-Backup-Sha256 and -Entries)");
    };
    let expected_len = resp.content_length();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
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
    Ok(Summary { len, sha256, entries })
}

/// The snapshot taken from the configured store itself (no daemon running).
fn offline_snapshot(config: &Config, partial: &Path) -> anyhow::Result<Summary> {
    if matches!(config.store, StoreConfig::Embedded) {
        crate::state_dir::require_store(&config.state_dir)?;
    }
    let store = crate::state_dir::open_store(config)?;
    write_snapshot(&store, partial).map(|(_, summary)| summary)
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
    // Held open to the end: a daemon starting meanwhile (systemd's restart,
    // say) finds the store locked and writes nothing into it.
    let replaced = match &config.store {
        StoreConfig::Embedded => open_replaced(&config.state_dir.join(STORE_FILE))?,
        // A database is restored into only when empty: nothing to read.
        StoreConfig::Postgres(_) => Replaced::Absent,
    };
    // The snapshot is copied, and the copy opened and prepared: the backup
    // file itself is never written to.
    let staging = config.state_dir.join(format!("{STORE_FILE}.restoring"));
    let _ = std::fs::remove_file(&staging);
    std::fs::copy(&args.from, &staging)
        .with_context(|| format!("cannot copy {} to {}", args.from.display(), staging.display()))?;
    let outcome = prepare(config, args, &staging, &replaced).and_then(|prepared| match &config.store {
        StoreConfig::Embedded => swap_in(config, &staging, &replaced).map(|kept| (prepared, kept)),
        StoreConfig::Postgres(_) => into_postgres(config, &staging).map(|()| (prepared, None)),
    });
    let _ = std::fs::remove_file(&staging);
    let ((report, undone), kept) = outcome?;
    drop(replaced);
    print_report(config, &args.from, &report, &undone, kept.as_deref());
    Ok(())
}

/// The embedded store a restore replaces.
enum Replaced {
    Absent,
    /// There, but it does not open (damaged); moved aside all the same.
    Unreadable,
    Open(Store),
}

fn open_replaced(live: &Path) -> anyhow::Result<Replaced> {
    if !live.exists() {
        return Ok(Replaced::Absent);
    }
    match Store::open(live) {
        Ok(store) => Ok(Replaced::Open(store)),
        Err(e) if e.is_in_use() => anyhow::bail!(
            "{} is in use: stop paywatch first (systemctl stop paywatch)",
            live.display()
        ),
        Err(e) => {
            eprintln!(
                "paywatch: the store being replaced, {}, cannot be read ({e}); it is kept aside",
                live.display()
            );
            Ok(Replaced::Unreadable)
        }
    }
}

/// Opens the copy (checking it is a store this build can run) and raises
/// it past what the replaced store had reached, when that store descends
/// from the snapshot. Returns the report and the replaced store's
/// off-chain decisions the restore undoes.
fn prepare(
    config: &Config,
    args: &RestoreArgs,
    staging: &Path,
    replaced: &Replaced,
) -> anyhow::Result<(RestoreReport, Vec<paywatch_state::Event>)> {
    let snapshot =
        Store::open(staging).with_context(|| format!("cannot open {} as a paywatch store", args.from.display()))?;
    let snapshot_seq = snapshot.restore_floors()?.get("next_seq").copied().unwrap_or(0);
    let (mut counters, mut undone) = (std::collections::BTreeMap::new(), Vec::new());
    if let Replaced::Open(live) = replaced {
        let reached = live.restore_floors()?;
        // Only a store that went on from this snapshot knows what the shop
        // saw since: a new store made after a loss (same path, different
        // identity) or an older one knows less, and would lower the floors.
        let descends =
            live.store_id()? == snapshot.store_id()? && reached.get("next_seq").copied().unwrap_or(0) >= snapshot_seq;
        if live.superseded()? {
            eprintln!(
                "paywatch: the store in place was copied elsewhere by `store copy` and may be a stale twin of \
                 the copy: what it reached is not taken as what your shop saw"
            );
        } else if descends {
            counters = reached;
            undone = live.off_chain_events_after(snapshot_seq)?;
        } else {
            eprintln!(
                "paywatch: the store in place is not a later state of this backup (a new store made since?): \
                 what it reached is not taken as what your shop saw"
            );
        }
    }
    if counters.is_empty() && args.seq_floor.is_none() {
        let why = match &config.store {
            StoreConfig::Postgres(_) => "a restore into a database never reads the database it replaces",
            StoreConfig::Embedded => "the store this replaces is lost, or is not a later state of this backup",
        };
        anyhow::bail!(
            "it is not known which events your shop has already seen ({why}): pass --seq-floor with one more \
             than the highest seq it has seen (the newest event it received, or its feed cursor), so that the \
             events after the restore are not taken for old ones"
        );
    }
    let floors = RestoreFloors {
        counters,
        next_seq_at_least: args.seq_floor,
        derive_ahead: args.derive_ahead,
    };
    let policies: Vec<_> = config.assets.iter().map(|a| a.policy.clone()).collect();
    let report = snapshot.prepare_restored(&policies, &floors)?;
    Ok((report, undone))
}

/// Puts the prepared copy in place of the live store in one rename, the
/// replaced store first linked under a name of its own (kept, never
/// deleted): at every moment there is a whole store at the live path.
/// Returns where the replaced store is kept.
fn swap_in(config: &Config, staging: &Path, replaced: &Replaced) -> anyhow::Result<Option<PathBuf>> {
    let live = config.state_dir.join(STORE_FILE);
    let kept = match replaced {
        Replaced::Absent => {
            // Nothing to replace: linked in, which fails rather than replace
            // a store a daemon started meanwhile has made.
            std::fs::hard_link(staging, &live).map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => anyhow::anyhow!(
                    "a store appeared at {} while restoring (did paywatch start?): stop it, then restore again",
                    live.display()
                ),
                _ => anyhow::Error::new(e).context(format!("cannot link the restored store to {}", live.display())),
            })?;
            sync_dir(&config.state_dir)?;
            return Ok(None);
        }
        Replaced::Unreadable | Replaced::Open(_) => Some(link_aside(&live)?),
    };
    if let Err(e) = std::fs::rename(staging, &live) {
        if let Some(kept) = &kept {
            let _ = std::fs::remove_file(kept);
        }
        return Err(e).with_context(|| format!("cannot move the restored store to {}", live.display()));
    }
    sync_dir(&config.state_dir)?;
    Ok(kept)
}

/// A second name for `live`, `paywatch.redb.replaced-<time>[-N]`, never
/// one that exists.
fn link_aside(live: &Path) -> anyhow::Result<PathBuf> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    for attempt in 1..100 {
        let suffix = if attempt == 1 {
            String::new()
        } else {
            format!("-{attempt}")
        };
        let kept = live.with_file_name(format!("{STORE_FILE}.replaced-{stamp}{suffix}"));
        match std::fs::hard_link(live, &kept) {
            Ok(()) => return Ok(kept),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot keep {} aside", live.display())),
        }
    }
    anyhow::bail!("cannot find a free name to keep {} aside", live.display())
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

fn print_report(
    config: &Config,
    from: &Path,
    report: &RestoreReport,
    undone: &[paywatch_state::Event],
    kept: Option<&Path>,
) {
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
    if !undone.is_empty() {
        println!("  decisions made after the snapshot, which the restore undoes (redo them by hand):");
        for event in undone {
            let what = [
                event.intent.as_ref().map(|i| i.id.as_str()),
                event.account.as_ref().map(|a| a.id.as_str()),
                event.transfer.as_ref().map(|t| t.id.as_str()),
            ];
            let what: Vec<&str> = what.into_iter().flatten().collect();
            println!(
                "    {} {} (seq {}, {})",
                event.kind.as_str(),
                what.join(" "),
                event.seq,
                event.created_at
            );
        }
    }
    println!("start paywatch: payments since the snapshot are found again by the rescan");
}
