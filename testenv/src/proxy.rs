//! A loopback TCP proxy that can be switched off, dropping every connection,
//! to simulate a backend outage without touching the node.

use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

pub struct Proxy {
    pub port: u16,
    state: Arc<Mutex<ProxyState>>,
    accept_task: AbortHandle,
}

struct ProxyState {
    up: bool,
    connections: Vec<AbortHandle>,
}

impl Proxy {
    pub async fn start(upstream_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(ProxyState {
            up: true,
            connections: vec![],
        }));
        let shared = state.clone();
        let accept_task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if !shared.lock().unwrap().up {
                    drop(inbound);
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", upstream_port)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                shared.lock().unwrap().connections.push(task.abort_handle());
            }
        })
        .abort_handle();
        Proxy {
            port,
            state,
            accept_task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Down: refuse new connections and cut the open ones.
    pub fn set_up(&self, up: bool) {
        let mut s = self.state.lock().unwrap();
        s.up = up;
        if !up {
            for c in s.connections.drain(..) {
                c.abort();
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept_task.abort();
        self.set_up(false);
    }
}
