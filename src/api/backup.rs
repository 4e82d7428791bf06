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
/// unlinked snapshot it holds takes room on the store's own disk (and so
/// does one slower in all than `backup::LONGEST_DOWNLOAD`).
const STALLED_CLIENT: std::time::Duration = std::time::Duration::from_secs(60);

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
    // the lock held with it: a client that gives up and asks again is
    // refused (409) until this one ends, rather than starting a second copy.
    let (taken, running) = tokio::task::spawn_blocking(move || (crate::backup::take_snapshot(&store, &dir), running))
        .await
        .map_err(ApiError::internal)?;
    let snapshot = taken.map_err(|e| ApiError::internal(format!("{e:#}")))?;
    let summary = snapshot.summary.clone();
    tracing::info!(bytes = summary.len, entries = summary.entries, sha256 = %summary.sha256, "backup taken");
    let name = format!("paywatch-{}.redb", snapshot.taken_at.format("%Y%m%dT%H%M%SZ"));
    let body = Body::from_stream(send_file(snapshot.file, running, STALLED_CLIENT));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, summary.len.to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
            (
                header::HeaderName::from_static("x-paywatch-backup-sha256"),
                summary.sha256,
            ),
            (
                header::HeaderName::from_static("x-paywatch-backup-entries"),
                summary.entries.to_string(),
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
    stalled: std::time::Duration,
) -> impl futures_util::Stream<Item = std::io::Result<axum::body::Bytes>> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::AsyncReadExt;
    let (sender, receiver) = tokio::sync::mpsc::channel::<std::io::Result<axum::body::Bytes>>(2);
    let complete = Arc::new(AtomicBool::new(false));
    let sent_all = complete.clone();
    tokio::spawn(async move {
        let _running = running;
        let deadline = tokio::time::Instant::now() + crate::backup::LONGEST_DOWNLOAD;
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
            let wait = stalled.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
            match tokio::time::timeout(wait, sender.send(chunk)).await {
                Ok(Ok(())) if !failed => {}
                Ok(_) => return, // a read error sent, or the client hung up
                Err(_) => {
                    tracing::warn!(
                        "a backup's client read too slowly (nothing for {stalled:?}, or longer than {:?} in all); cut off",
                        crate::backup::LONGEST_DOWNLOAD
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

#[cfg(test)]
mod tests {
    use std::io::{Seek, Write};
    use std::time::Duration;

    use futures_util::StreamExt;

    use super::*;

    const LEN: usize = 1 << 20;

    fn file_of(len: usize) -> std::fs::File {
        let mut file = tempfile::tempfile().expect("a temporary file");
        file.write_all(&vec![7u8; len]).expect("written");
        file.rewind().expect("rewound");
        file
    }

    async fn freed(lock: &tokio::sync::Mutex<()>) -> bool {
        for _ in 0..100 {
            if lock.try_lock().is_ok() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    #[tokio::test]
    async fn one_backup_at_a_time_means_until_its_download_ends_or_is_dropped() {
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        let guard = lock.clone().try_lock_owned().expect("free");
        let mut stream = std::pin::pin!(send_file(file_of(LEN), guard, STALLED_CLIENT));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(lock.try_lock().is_err(), "held while the client has read nothing");
        let mut read = 0;
        while let Some(chunk) = stream.next().await {
            read += chunk.expect("no error").len();
        }
        assert_eq!(read, LEN);
        assert!(freed(&lock).await, "free once the download ended");

        let guard = lock.clone().try_lock_owned().expect("free");
        let mut stream = Box::pin(send_file(file_of(LEN), guard, STALLED_CLIENT));
        assert!(stream.next().await.expect("a chunk").is_ok());
        assert!(lock.try_lock().is_err(), "held mid-download");
        drop(stream); // the client hung up
        assert!(freed(&lock).await, "free once the client hung up");
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_is_cut_off_with_an_error() {
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        let guard = lock.clone().try_lock_owned().expect("free");
        let mut stream = std::pin::pin!(send_file(file_of(LEN), guard, Duration::from_millis(100)));
        let mut read = stream.next().await.expect("a chunk").expect("no error").len();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(freed(&lock).await, "the stalled download let the lock go");
        let mut last = None;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => read += bytes.len(),
                Err(e) => last = Some(e),
            }
        }
        assert!(read < LEN, "cut off before the end ({read} bytes)");
        assert!(
            last.is_some(),
            "a cut-off download ends in an error, never short and clean"
        );
    }
}
