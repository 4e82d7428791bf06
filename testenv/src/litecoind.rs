//! A Litecoin Core regtest node owned by one test.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::{free_port, wait_for};

/// The regtest node's RPC password: distinctive, so a test can grep the
/// daemon's logs for it.
pub const RPC_PASSWORD: &str = "ltc-rpc-pass-9f3c2a";

/// A testnet extended public key for xpub descriptors (`wpkh(TPUB/0/*)`);
/// the node derives the same addresses (`deriveaddresses`).
pub const TPUB: &str =
    "tpubDDPRy5xWxJTuVmsh7YRzK8o2EdMWgn4t41fTLxXRgyRN7EKvN2L8BKCFC1gUfPu8Xp6rr667Yc26zrXsiBZsgBc8dQiYnhPNk2Q7CsBrer5";

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
                &format!("-rpcpassword={RPC_PASSWORD}"),
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
        // Through the default wallet's path: required once other wallets are loaded.
        let url = if self.wallet_ready {
            format!("{}/wallet/w", self.url())
        } else {
            self.url()
        };
        let resp = self
            .http
            .post(url)
            .basic_auth("u", Some(RPC_PASSWORD))
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

    pub async fn new_addresses(&self, n: usize) -> Vec<String> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.new_address().await);
        }
        out
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

    pub async fn best_hash(&self) -> String {
        self.rpc("getbestblockhash", json!([]))
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Calls a wallet RPC on another wallet of this node.
    pub async fn wallet_rpc(&self, wallet: &str, method: &str, params: Value) -> Value {
        let body = json!({"jsonrpc": "1.0", "id": "t", "method": method, "params": params});
        let v: Value = self
            .http
            .post(format!("{}/wallet/{wallet}", self.url()))
            .basic_auth("u", Some(RPC_PASSWORD))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(v["error"].is_null(), "{wallet} {method}: {}", v["error"]);
        v["result"].clone()
    }

    /// Replaces `txid` in the mempool with a transaction spending the same
    /// inputs back to the node's own wallet (a double spend, higher fee).
    /// Needs `-mempoolreplacement=1` and an opt-in RBF original.
    pub async fn double_spend(&self, txid: &str) -> String {
        let tx = self.rpc("getrawtransaction", json!([txid, true])).await;
        let mut inputs = Vec::new();
        let mut total_sats: i64 = 0;
        for vin in tx["vin"].as_array().unwrap() {
            let (prev, n) = (vin["txid"].as_str().unwrap(), vin["vout"].as_u64().unwrap());
            let prev_tx = self.rpc("gettransaction", json!([prev])).await;
            let decoded = self.rpc("decoderawtransaction", json!([prev_tx["hex"]])).await;
            let value = decoded["vout"][n as usize]["value"].to_string();
            total_sats += to_sats(&value);
            inputs.push(json!({"txid": prev, "vout": n}));
        }
        let fee_sats = 1_000_000; // 0.01: far above the original's fee
        let back = self.new_address().await;
        let amount = format!(
            "{}.{:08}",
            (total_sats - fee_sats) / 100_000_000,
            (total_sats - fee_sats) % 100_000_000
        );
        let outputs: Value = serde_json::from_str(&format!("{{\"{back}\": {amount}}}")).unwrap();
        let raw = self.rpc("createrawtransaction", json!([inputs, outputs])).await;
        let signed = self.rpc("signrawtransactionwithwallet", json!([raw])).await;
        assert_eq!(signed["complete"], true, "{signed}");
        self.rpc("sendrawtransaction", json!([signed["hex"]]))
            .await
            .as_str()
            .unwrap()
            .to_string()
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

/// "12.5" -> 1_250_000_000 (test amounts from the node's JSON numbers).
pub fn to_sats(text: &str) -> i64 {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    let frac = format!("{frac:0<8}");
    whole.parse::<i64>().unwrap() * 100_000_000 + frac[..8].parse::<i64>().unwrap()
}
