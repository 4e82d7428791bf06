//! Signals and the systemd watchdog.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::engine::Engine;

/// Resolves on SIGTERM or SIGINT with the signal's name.
pub async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        _ => {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

/// Pings the systemd watchdog while the store still answers, so a wedged
/// daemon gets restarted.
pub async fn watchdog(engine: Arc<Engine>, period: Duration, cancel: CancellationToken) -> anyhow::Result<()> {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(period) => {}
        }
        let store = engine.store.clone();
        let alive = tokio::task::spawn_blocking(move || store.last_seq().is_ok())
            .await
            .unwrap_or(false);
        if alive {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
        } else {
            tracing::error!("store unreadable; withholding the watchdog ping");
        }
    }
}

/// Wakes every poller on SIGUSR1 ("poll now"), until cancelled.
pub async fn poll_now_on_sigusr1(wakes: Vec<Arc<Notify>>, cancel: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut usr1 = signal(SignalKind::user_defined1())?;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            received = usr1.recv() => {
                if received.is_none() {
                    return Ok(());
                }
                tracing::info!("SIGUSR1: polling every asset now");
                for wake in &wakes {
                    wake.notify_one();
                }
            }
        }
    }
}
