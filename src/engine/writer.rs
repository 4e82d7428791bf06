//! The intent writer: one thread that commits creates in groups, and parks
//! the creates of an asset whose poller holds its fence.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use paywatch_state::{Asset, AssetPolicy, CreateError, Created, NewRecord, Store};

use crate::clock::Clock;

/// The writer thread and the queue to it. Dropping the queue (`stop`) lets
/// the thread answer what is queued and end; `stop` then joins it.
pub(super) struct Writer {
    sender: Mutex<Option<std::sync::mpsc::Sender<CreateJob>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Writer {
    /// Queues a create; false once the writer stopped.
    pub(super) fn send(&self, job: CreateJob) -> bool {
        match &*self.sender.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(sender) => sender.send(job).is_ok(),
            None => false,
        }
    }

    /// Whether the thread has ended (it only does once stopped, or on a
    /// panic).
    pub(super) fn ended(&self) -> bool {
        self.thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_none_or(|t| t.is_finished())
    }

    /// Ends the thread after the queued creates are answered, and waits
    /// for it (blocking: call from a blocking context).
    pub(super) fn stop(&self) {
        drop(self.sender.lock().unwrap_or_else(|p| p.into_inner()).take());
        if let Some(thread) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take()
            && thread.join().is_err()
        {
            tracing::error!("the intent writer thread panicked");
        }
    }
}

/// Per asset: held by the intent writer while it commits intents of that
/// asset, and by its poller when a step must be applied with no create in
/// between (see `Engine::fence_creates`).
pub(super) type Fences = Arc<HashMap<Asset, Arc<tokio::sync::Mutex<()>>>>;

/// One create request (an intent or a deposit account) waiting for the writer.
pub(super) struct CreateJob {
    pub(super) req: NewRecord,
    pub(super) reply: tokio::sync::oneshot::Sender<Result<Created, CreateError>>,
}

/// Most creates one group commit carries.
const MAX_CREATE_GROUP: usize = 256;

/// The thread that writes intents: it takes the first waiting create, adds
/// every other one already queued, commits them in one durable transaction,
/// and answers each. Under load one fsync serves many creates; alone, a
/// create is committed at once.
pub(super) fn spawn_create_writer(
    store: Arc<Store>,
    policies: HashMap<Asset, AssetPolicy>,
    clock: Arc<dyn Clock>,
    fences: Fences,
) -> std::io::Result<Writer> {
    let (sender, jobs) = std::sync::mpsc::channel::<CreateJob>();
    let thread = std::thread::Builder::new()
        .name("intent-writer".into())
        .spawn(move || {
            // Creates of an asset whose poller holds its fence wait here, in
            // order, while other assets' creates go on.
            let mut parked: Vec<CreateJob> = Vec::new();
            loop {
                let next = if parked.is_empty() {
                    jobs.recv().ok()
                } else {
                    match jobs.recv_timeout(PARKED_RETRY) {
                        Ok(job) => Some(job),
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                            // Stopping with creates still parked: their fence
                            // is released soon (pollers stop first).
                            std::thread::sleep(PARKED_RETRY);
                            None
                        }
                    }
                };
                if next.is_none() && parked.is_empty() {
                    return; // stopped, and every create answered
                }
                let mut group = std::mem::take(&mut parked);
                group.extend(next);
                while group.len() < MAX_CREATE_GROUP {
                    match jobs.try_recv() {
                        Ok(job) => group.push(job),
                        Err(_) => break,
                    }
                }
                // Fences free now, taken in a fixed order; the rest wait.
                let mut assets: Vec<Asset> = group.iter().map(|j| j.req.asset()).collect();
                assets.sort();
                assets.dedup();
                let mut held = Vec::new();
                let mut open = HashSet::new();
                for asset in assets {
                    match fences.get(&asset).map(|f| f.try_lock()) {
                        Some(Ok(guard)) => {
                            if held_elsewhere(&store, asset) {
                                continue;
                            }
                            held.push(guard);
                            open.insert(asset);
                        }
                        Some(Err(_)) => {}
                        None => {
                            open.insert(asset);
                        }
                    }
                }
                let mut batch = Vec::with_capacity(group.len());
                let mut replies = Vec::with_capacity(group.len());
                for job in group {
                    if !open.contains(&job.req.asset()) {
                        parked.push(job);
                        continue;
                    }
                    match policies.get(&job.req.asset()) {
                        Some(policy) => {
                            batch.push((policy, job.req));
                            replies.push(job.reply);
                        }
                        None => {
                            let _ = job.reply.send(Err(CreateError::NotAllowed(format!(
                                "{} is not configured",
                                job.req.asset()
                            ))));
                        }
                    }
                }
                if batch.is_empty() {
                    continue;
                }
                let result = store.create_batch(batch, clock.now());
                drop(held);
                match result {
                    Ok(answers) => {
                        for (reply, answer) in replies.into_iter().zip(answers) {
                            let _ = reply.send(answer);
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot write intents");
                        for reply in replies {
                            let _ = reply.send(Err(CreateError::Failed(e.to_string())));
                        }
                    }
                }
            }
        })?;
    Ok(Writer {
        sender: Mutex::new(Some(sender)),
        thread: Mutex::new(Some(thread)),
    })
}

/// Whether another instance sharing the store holds creates of `asset`
/// back (`Engine::fence_creates`). A create checked just before the hold
/// was written can still commit after it: at most one more redo.
fn held_elsewhere(store: &Store, asset: Asset) -> bool {
    if !store.is_shared() {
        return false;
    }
    // Unreadable: the create itself will fail the same way.
    store.lease_live(&format!("creates/{asset}")).unwrap_or(false)
}

/// How often creates waiting for a fenced asset are tried again.
const PARKED_RETRY: Duration = Duration::from_millis(20);
