//! `POST /v1/backup`: a consistent snapshot of the whole store, streamed
//! while the daemon goes on (docs/operations.md, "Backups").

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use super::{ApiError, ApiResult, App, Caller};

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
    // Taken to the end even if the client hangs up meanwhile: the snapshot
    // is unlinked as soon as it is written, so nothing is left behind.
    let snapshot = tokio::task::spawn_blocking(move || {
        let _running = running;
        crate::backup::take_snapshot(&store, &dir)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|e| ApiError::internal(format!("{e:#}")))?;
    tracing::info!(
        bytes = snapshot.len,
        entries = snapshot.entries,
        sha256 = %snapshot.sha256,
        "backup taken"
    );
    let name = format!("paywatch-{}.redb", snapshot.taken_at.format("%Y%m%dT%H%M%SZ"));
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(
        snapshot.file,
    )));
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
