//! Several instances on one PostgreSQL store (docs/high-availability.md).
//!
//! Every instance serves the whole API. Each asset's poller, and the
//! webhook dispatcher, runs on one instance at a time: the one holding its
//! lease (`scan/<ASSET>`, `webhooks`). A holder renews every third of
//! `lease_ttl`; an instance that cannot renew for two thirds of it stops
//! the work itself, before the lease can pass on. Whatever a former holder
//! still tries to write is refused by the fence in the write's own
//! transaction (`Store::apply_scan_fenced`), so two instances never both
//! apply. When the holder dies, another takes the lease once it lapses:
//! within `lease_ttl` and a third.
//!
//! With the embedded store there is one instance: the work simply runs.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use paywatch_state::{Fence, Store};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::ClusterConfig;
use crate::engine::Engine;
use crate::metrics::Metrics;

pub struct Cluster {
    store: Arc<Store>,
    /// `<instance>/<random>`: a restarted instance is a new holder, so it
    /// never mistakes its predecessor's lease (and fence) for its own.
    holder: String,
    ttl: Duration,
    metrics: Arc<Metrics>,
}

/// Why a lease term ended.
#[derive(Debug, PartialEq)]
enum TermEnd {
    Shutdown,
    Lost,
    WorkEnded,
}

impl Cluster {
    pub fn new(store: Arc<Store>, config: &ClusterConfig, metrics: Arc<Metrics>) -> Cluster {
        Cluster {
            store,
            holder: format!("{}/{:08x}", config.instance, paywatch_state::ids::random_u32()),
            ttl: config.lease_ttl,
            metrics,
        }
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Asks for `lease` (or renews it) on a blocking thread. The handle is
    /// kept by callers that must know the call is over before they release
    /// the lease (a late renewal would take it again).
    fn acquire(&self, lease: &str) -> tokio::task::JoinHandle<Result<Option<u64>, paywatch_state::StoreError>> {
        let (store, lease, holder, ttl) = (self.store.clone(), lease.to_string(), self.holder.clone(), self.ttl);
        tokio::task::spawn_blocking(move || store.acquire_lease(&lease, &holder, ttl))
    }

    /// Runs the work of `lease` while this instance holds it, until
    /// `cancel`: `start` makes one term's work from the fence it holds and
    /// a token cancelled when the term ends. With the embedded store, one
    /// term without a fence runs until `cancel`.
    pub async fn hold<F, Fut>(
        self: Arc<Self>,
        lease: String,
        cancel: CancellationToken,
        mut start: F,
    ) -> anyhow::Result<()>
    where
        F: FnMut(Option<Fence>, CancellationToken) -> Fut + Send,
        Fut: Future<Output = ()> + Send + 'static,
    {
        if !self.store.is_shared() {
            start(None, cancel).await;
            return Ok(());
        }
        let retry = self.ttl / 3;
        let held = self.metrics.lease_held.with_label_values(&[lease.as_str()]);
        held.set(0);
        loop {
            if cancel.is_cancelled() {
                return Ok(());
            }
            let sent = Instant::now();
            let token = match self.acquire(&lease).await {
                Ok(Ok(Some(token))) => token,
                Ok(Ok(None)) => {
                    pause(&cancel, retry).await;
                    continue;
                }
                Ok(Err(e)) => {
                    tracing::warn!(lease, error = %e, "cannot reach the store to take a lease; retrying");
                    pause(&cancel, retry).await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(lease, error = %e, "the lease request failed to run; retrying");
                    pause(&cancel, retry).await;
                    continue;
                }
            };
            let fence = Fence {
                lease: lease.clone(),
                token,
            };
            tracing::info!(lease, fence = token, holder = %self.holder, "took the lease; working under it");
            self.metrics.lease_terms.with_label_values(&[lease.as_str()]).inc();
            held.set(1);
            let term = cancel.child_token();
            // The work runs as a task of its own: however long one of its
            // store calls blocks, the renewal timers here keep running.
            let work = tokio::spawn(start(Some(fence.clone()), term.clone()));
            let end = self.term(&fence, sent, &term, work).await;
            held.set(0);
            match end {
                TermEnd::Shutdown => {
                    self.release(fence).await;
                    return Ok(());
                }
                TermEnd::Lost => tracing::warn!(lease, "lost the lease; stopped the work under it"),
                TermEnd::WorkEnded => {
                    // Let another instance have it meanwhile: the work may
                    // fail here for a reason of this instance's own.
                    tracing::warn!(lease, "the work under the lease stopped; giving the lease up");
                    self.release(fence).await;
                    pause(&cancel, self.ttl).await;
                }
            }
        }
    }

    /// One term, the lease taken by a request sent at `taken`. Renewals go
    /// out every third of `lease_ttl` from the last one sent; one that fails
    /// is retried at once (briefly spaced) until two thirds of `lease_ttl`
    /// have passed since the last renewal that worked was sent, and then the
    /// term ends: before the lease can pass on, whatever the work is doing.
    /// The work is awaited to its end (it stops promptly once `term` is
    /// cancelled), and so is a renewal still running, so nothing of this
    /// term is in flight when the lease is released or taken again.
    async fn term(
        &self,
        fence: &Fence,
        taken: Instant,
        term: &CancellationToken,
        mut work: tokio::task::JoinHandle<()>,
    ) -> TermEnd {
        let mut renewed = taken;
        let mut next = taken + self.ttl / 3;
        let mut work_done = false;
        let mut renewal: Option<tokio::task::JoinHandle<_>> = None;
        let end = loop {
            tokio::select! {
                _ = &mut work => {
                    work_done = true;
                    break if term.is_cancelled() { TermEnd::Shutdown } else { TermEnd::WorkEnded };
                }
                _ = term.cancelled() => break TermEnd::Shutdown,
                _ = tokio::time::sleep_until(next) => {}
            }
            let sent = Instant::now();
            let deadline = renewed + self.ttl * 2 / 3;
            let handle = renewal.insert(self.acquire(&fence.lease));
            let outcome = tokio::select! {
                _ = &mut work => {
                    work_done = true;
                    break if term.is_cancelled() { TermEnd::Shutdown } else { TermEnd::WorkEnded };
                }
                _ = term.cancelled() => break TermEnd::Shutdown,
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(lease = fence.lease, "the lease renewal did not answer in time");
                    break TermEnd::Lost;
                }
                outcome = handle => outcome,
            };
            renewal = None;
            match outcome {
                Ok(Ok(Some(token))) if token == fence.token => {
                    renewed = sent;
                    next = sent + self.ttl / 3;
                }
                Ok(Ok(_)) => break TermEnd::Lost,
                Ok(Err(e)) => {
                    tracing::warn!(lease = fence.lease, error = %e, "cannot renew the lease; trying again");
                    next = Instant::now() + RENEWAL_RETRY;
                }
                Err(e) => {
                    tracing::warn!(lease = fence.lease, error = %e, "the lease renewal failed to run; trying again");
                    next = Instant::now() + RENEWAL_RETRY;
                }
            }
        };
        term.cancel();
        if !work_done
            && let Err(e) = work.await
            && e.is_panic()
        {
            tracing::error!(lease = fence.lease, "the work under the lease panicked");
        }
        if let Some(late) = renewal {
            let _ = late.await;
        }
        end
    }

    async fn release(&self, fence: Fence) {
        let (store, holder, lease) = (self.store.clone(), self.holder.clone(), fence.lease.clone());
        let released =
            tokio::task::spawn_blocking(move || store.release_lease(&fence.lease, &holder, fence.token)).await;
        if !matches!(released, Ok(Ok(()))) {
            tracing::warn!(
                lease,
                "could not release the lease; another instance takes it once it lapses"
            );
        }
    }
}

/// How soon a failed renewal is tried again.
const RENEWAL_RETRY: Duration = Duration::from_millis(300);

async fn pause(cancel: &CancellationToken, d: Duration) {
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = tokio::time::sleep(d) => {}
    }
}

/// Wakes this instance's feed readers and webhook dispatcher when another
/// instance commits events (PostgreSQL `NOTIFY`); with the embedded store
/// there is no other writer and it waits for `cancel`.
pub async fn follow_other_instances(engine: Arc<Engine>, cancel: CancellationToken) -> anyhow::Result<()> {
    let notified = Arc::new(tokio::sync::Notify::new());
    let wake = notified.clone();
    let Some(_listening) = engine.store.listen(Arc::new(move || wake.notify_one())) else {
        cancel.cancelled().await;
        return Ok(());
    };
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = notified.notified() => {}
        }
        let store = engine.store.clone();
        match tokio::task::spawn_blocking(move || store.last_seq()).await? {
            Ok(seq) => engine.note_events_up_to(seq),
            Err(e) => tracing::warn!(error = %e, "cannot read the newest event after a wakeup"),
        }
    }
}
