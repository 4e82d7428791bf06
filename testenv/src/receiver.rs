//! A webhook receiver on loopback that records every delivery and can be
//! told to fail.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

#[derive(Clone, Debug)]
pub struct Delivery {
    pub event_id: String,
    pub event_type: String,
    pub signature: String,
    pub body: Vec<u8>,
    /// Whether this attempt was answered with a 2xx.
    pub accepted: bool,
}

impl Delivery {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Default)]
struct Shared {
    deliveries: Mutex<Vec<Delivery>>,
    failing: AtomicBool,
    /// Deliveries whose body contains this get HTTP 400 (a shop rejecting
    /// one order's events).
    rejecting: Mutex<Option<String>>,
}

pub struct Receiver {
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::AbortHandle,
}

impl Receiver {
    pub async fn start() -> Receiver {
        super::install_tls();
        let shared = Arc::new(Shared::default());
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(shared.clone());
        let (base, task) = super::serve_loopback(app).await;
        Receiver {
            url: format!("{base}/hook"),
            shared,
            task,
        }
    }

    /// While failing, every delivery gets HTTP 503.
    pub fn set_failing(&self, failing: bool) {
        self.shared.failing.store(failing, Ordering::SeqCst);
    }

    /// Answers 400 to every delivery whose body contains `text` (`None`: stop).
    pub fn reject_containing(&self, text: Option<&str>) {
        *self.shared.rejecting.lock().unwrap() = text.map(str::to_string);
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.deliveries.lock().unwrap().clone()
    }

    /// Accepted deliveries, first acceptance of each event id only.
    pub fn accepted_unique(&self) -> Vec<Delivery> {
        let mut seen = std::collections::HashSet::new();
        self.deliveries()
            .into_iter()
            .filter(|d| d.accepted && seen.insert(d.event_id.clone()))
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let rejected = shared
        .rejecting
        .lock()
        .unwrap()
        .as_deref()
        .is_some_and(|t| String::from_utf8_lossy(&body).contains(t));
    let accepted = !shared.failing.load(Ordering::SeqCst) && !rejected;
    shared.deliveries.lock().unwrap().push(Delivery {
        event_id: header("paywatch-event-id"),
        event_type: header("paywatch-event-type"),
        signature: header("paywatch-signature"),
        body: body.to_vec(),
        accepted,
    });
    if accepted {
        StatusCode::OK
    } else if rejected {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// Checks `Paywatch-Signature: t=..,v1=..` against the body with `secret`.
pub fn signature_valid(secret: &str, header: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = Some(value.to_string()),
            Some(("v1", value)) => v1 = Some(value.to_string()),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else { return false };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes()) == v1
}
