//! `POST /v1/backup`: a consistent snapshot of the whole store, streamed
//! while the daemon goes on (docs/operations.md, "Backups").

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use super::{ApiError, ApiResult, App, Caller};

/// A client that reads nothing for this long loses its backup: the
/// unlinked snapshot it holds takes room on the store's own disk.
const STALLED_CLIENT: std::time::Duration = std::time::Duration::from_secs(60);
/// And one that reads, but so slowly that the download outlasts this.
const LONGEST_DOWNLOAD: std::time::Duration = std::time::Duration::from_secs(3600);

pub async fn backup(State(app): State<Arc<App>>, Extension(caller): Extension<Caller>) -> ApiResult {
    // One at a time: each reads the whole store and writes a copy of it.
    let Ok(running) = app.backup_running.clone().try_lock_owned() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "backup_running",
            "another backup is being taken; try again when it is done",
        ));
    };
    tracing::info!(caller = %caller.name, "backup requested");
    let (store, dir) = (app.engine.store.clone(), app.state_dir.clone());
    // Taken to the end even if the client hangs up meanwhile (the snapshot
    // is unlinked as soon as it is written, so nothing is left behind), and
    // the lock with it: a client that gives up and asks again waits for
    // this one rather than starting a second copy.
    let (taken, running) = tokio::task::spawn_blocking(move || (crate::backup::take_snapshot(&store, &dir), running))
        .await
        .map_err(ApiError::internal)?;
    let snapshot = taken.map_err(|e| ApiError::internal(format!("{e:#}")))?;
    tracing::info!(
        bytes = snapshot.len,
        entries = snapshot.entries,
        sha256 = %snapshot.sha256,
        "backup taken"
    );
    let name = format!("paywatch-{}.redb", snapshot.taken_at.format("%Y%m%dT%H%M%SZ"));
    let body = Body::from_stream(send_file(snapshot.file, running));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, snapshot.len.to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
            (
                header::HeaderName::from_static("x-paywatch-backup-sha256"),
                snapshot.sha256,
            ),
            (
                header::HeaderName::from_static("x-paywatch-backup-entries"),
                snapshot.entries.to_string(),
            ),
            (
                header::HeaderName::from_static("x-paywatch-backup-taken-at"),
                snapshot.taken_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            ),
        ],
        body,
    )
        .into_response())
}

/// The snapshot's bytes, read by a task of their own that holds `running`
/// (one backup at a time, streaming included) and gives up on a client
/// that stops reading or takes too long. A download cut off ends in an
/// error, never in a short body that could pass for a whole one.
fn send_file(
    file: std::fs::File,
    running: tokio::sync::OwnedMutexGuard<()>,
) -> impl futures_util::Stream<Item = std::io::Result<axum::body::Bytes>> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::AsyncReadExt;
    let (sender, receiver) = tokio::sync::mpsc::channel::<std::io::Result<axum::body::Bytes>>(2);
    let complete = Arc::new(AtomicBool::new(false));
    let sent_all = complete.clone();
    tokio::spawn(async move {
        let _running = running;
        let deadline = tokio::time::Instant::now() + LONGEST_DOWNLOAD;
        let mut file = tokio::fs::File::from_std(file);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let chunk = match file.read(&mut buf).await {
                Ok(0) => {
                    sent_all.store(true, Ordering::Release);
                    return;
                }
                Ok(n) => Ok(axum::body::Bytes::copy_from_slice(&buf[..n])),
                Err(e) => Err(e),
            };
            let failed = chunk.is_err();
            let wait = STALLED_CLIENT.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
            match tokio::time::timeout(wait, sender.send(chunk)).await {
                Ok(Ok(())) if !failed => {}
                Ok(_) => return, // a read error sent, or the client hung up
                Err(_) => {
                    tracing::warn!(
                        "a backup's client read too slowly (nothing for {STALLED_CLIENT:?}, or longer than {LONGEST_DOWNLOAD:?} in all); cut off"
                    );
                    return;
                }
            }
        }
    });
    futures_util::stream::unfold(Some(receiver), move |receiver| {
        let complete = complete.clone();
        async move {
            let mut receiver = receiver?;
            match receiver.recv().await {
                Some(chunk) => Some((chunk, Some(receiver))),
                None if complete.load(Ordering::Acquire) => None,
                None => Some((Err(std::io::Error::other("the backup download was cut off")), None)),
            }
        }
    })
}
