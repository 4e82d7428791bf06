//! A Litecoin Core regtest node owned by one test.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::{free_port, wait_for};

pub struct Litecoind {
    pub rpc_port: u16,
    pub datadir: tempfile::TempDir,
    child: Child,
    http: reqwest::Client,
    wallet_ready: bool,
}

/// The litecoind binary: `$LITECOIND`, or Debian's package path. Panics with
/// instructions when neither exists: tests never skip silently.
pub fn litecoind_binary() -> PathBuf {
    if let Ok(p) = std::env::var("LITECOIND") {
        return PathBuf::from(p);
    }
    let debian = PathBuf::from("/usr/lib/litecoin/litecoind");
    if debian.exists() {
        return debian;
    }
    panic!(
        "litecoind not found: run scripts/test.sh (it installs Debian's litecoind) or set LITECOIND=/path/to/litecoind"
    );
}

impl Litecoind {
    pub async fn start() -> Litecoind {
        Litecoind::start_with(&[]).await
    }

    /// Starts a fresh regtest node with a wallet and 101 blocks mined (the
    /// first coinbase is spendable).
    pub async fn start_with(extra_args: &[&str]) -> Litecoind {
        super::install_tls();
        let datadir = tempfile::tempdir().unwrap();
        let rpc_port = free_port();
        let p2p_port = free_port();
        let child = Command::new(litecoind_binary())
            .arg("-regtest")
            .arg(format!("-datadir={}", datadir.path().display()))
            .args([
                "-rpcuser=u",
                "-rpcpassword=p",
                "-listen=0",
                "-fallbackfee=0.0001",
                "-txindex=0",
                "-printtoconsole=0",
            ])
            .arg(format!("-rpcport={rpc_port}"))
            .arg(format!("-port={p2p_port}"))
            .args(extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("failed to start litecoind");
        let mut node = Litecoind {
            rpc_port,
            datadir,
            child,
            http: reqwest::Client::new(),
            wallet_ready: false,
        };
        wait_for("litecoind RPC", Duration::from_secs(60), || async {
            node.try_rpc("getblockchaininfo", json!([])).await.ok()
        })
        .await;
        node.rpc("createwallet", json!(["w"])).await;
        node.wallet_ready = true;
        let miner = node.new_address().await;
        node.rpc("generatetoaddress", json!([101, miner])).await;
        node
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.rpc_port)
    }

    pub async fn try_rpc(&self, method: &str, params: Value) -> Result<Value, Value> {
        let body = json!({"jsonrpc": "1.0", "id": "t", "method": method, "params": params});
        let resp = self
            .http
            .post(self.url())
            .basic_auth("u", Some("p"))
            .json(&body)
            .send()
            .await
            .map_err(|e| json!(e.to_string()))?;
        let v: Value = resp.json().await.map_err(|e| json!(e.to_string()))?;
        if v["error"].is_null() {
            Ok(v["result"].clone())
        } else {
            Err(v["error"].clone())
        }
    }

    pub async fn rpc(&self, method: &str, params: Value) -> Value {
        match self.try_rpc(method, params.clone()).await {
            Ok(v) => v,
            Err(e) => panic!("litecoind {method} {params}: {e}"),
        }
    }

    pub async fn new_address(&self) -> String {
        self.rpc("getnewaddress", json!(["", "bech32"]))
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Pays `amount` (a decimal string, in LTC) to `address`; returns the txid.
    pub async fn send(&self, address: &str, amount: &str) -> String {
        let amount: f64 = amount.parse().unwrap(); // the RPC takes a JSON number; test amounts are exact in f64 at 8 dp
        self.rpc("sendtoaddress", json!([address, amount]))
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn mine(&self, blocks: u64) -> Vec<String> {
        let miner = self.new_address().await;
        serde_json::from_value(self.rpc("generatetoaddress", json!([blocks, miner])).await).unwrap()
    }

    pub async fn height(&self) -> u64 {
        self.rpc("getblockcount", json!([])).await.as_u64().unwrap()
    }

    pub async fn mempool(&self) -> Vec<String> {
        serde_json::from_value(self.rpc("getrawmempool", json!([])).await).unwrap()
    }
}

impl Drop for Litecoind {
    fn drop(&mut self) {
        // Only the process this test started.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
