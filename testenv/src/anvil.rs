//! An anvil (Foundry) EVM node with chain id 56, owned by one test, and the
//! test token deployed on it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use alloy_primitives::{Address, U256, keccak256};
use serde_json::{Value, json};

use super::{free_port, wait_for};

/// The anvil binary: `$ANVIL`, the copy `scripts/test.sh` installs under
/// `.tools/`, or `anvil` on PATH. Panics with instructions otherwise.
pub fn anvil_binary() -> PathBuf {
    if let Ok(p) = std::env::var("ANVIL") {
        return PathBuf::from(p);
    }
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../.tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    if local.exists() {
        return local;
    }
    if let Ok(out) = Command::new("which").arg("anvil").output()
        && out.status.success()
    {
        return PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    }
    panic!(
        "anvil not found: run scripts/test.sh (it installs @foundry-rs/anvil from npm into .tools/) or set ANVIL=/path/to/anvil"
    );
}

pub struct Anvil {
    pub port: u16,
    child: Child,
    http: reqwest::Client,
    pub accounts: Vec<String>,
}

fn word(bytes: &[u8]) -> String {
    format!("{:0>64}", hex::encode(bytes))
}

fn address_word(a: &str) -> String {
    word(a.parse::<Address>().unwrap().as_slice())
}

fn uint_word(v: u128) -> String {
    format!("{:064x}", U256::from(v))
}

fn selector(signature: &str) -> String {
    hex::encode(&keccak256(signature.as_bytes())[..4])
}

impl Anvil {
    pub async fn start() -> Anvil {
        super::install_tls();
        let port = free_port();
        let child = Command::new(anvil_binary())
            .args(["--port", &port.to_string(), "--chain-id", "56", "--accounts", "5"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("failed to start anvil");
        let mut node = Anvil {
            port,
            child,
            http: reqwest::Client::new(),
            accounts: vec![],
        };
        let accounts = wait_for("anvil RPC", Duration::from_secs(30), || async {
            node.try_rpc("eth_accounts", json!([])).await.ok()
        })
        .await;
        node.accounts = accounts
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().parse::<Address>().unwrap().to_checksum(None))
            .collect();
        node
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub async fn try_rpc(&self, method: &str, params: Value) -> Result<Value, Value> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let resp = self
            .http
            .post(self.url())
            .json(&body)
            .send()
            .await
            .map_err(|e| json!(e.to_string()))?;
        let v: Value = resp.json().await.map_err(|e| json!(e.to_string()))?;
        if v.get("error").is_none_or(|e| e.is_null()) {
            Ok(v["result"].clone())
        } else {
            Err(v["error"].clone())
        }
    }

    pub async fn rpc(&self, method: &str, params: Value) -> Value {
        match self.try_rpc(method, params.clone()).await {
            Ok(v) => v,
            Err(e) => panic!("anvil {method} {params}: {e}"),
        }
    }

    /// Sends a transaction from the first (unlocked) account; anvil mines it
    /// at once. Returns the transaction hash.
    async fn send(&self, to: Option<&str>, data: String) -> String {
        let mut tx = json!({"from": self.accounts[0], "data": format!("0x{data}"), "gas": "0x4c4b40"});
        if let Some(to) = to {
            tx["to"] = json!(to);
        }
        let hash = self.rpc("eth_sendTransaction", json!([tx])).await;
        let receipt = self.receipt(&hash).await;
        assert_eq!(receipt["status"], "0x1", "transaction failed: {receipt}");
        hash.as_str().unwrap().to_string()
    }

    /// The receipt, once anvil has mined the transaction.
    async fn receipt(&self, hash: &Value) -> Value {
        wait_for("a transaction receipt", Duration::from_secs(20), || async {
            let r = self.rpc("eth_getTransactionReceipt", json!([hash])).await;
            (!r.is_null()).then_some(r)
        })
        .await
    }

    /// Deploys the test token ("Tether USD"/"USDT") with `decimals` and the
    /// whole supply on the first account; returns its checksummed address.
    pub async fn deploy_token(&self, decimals: u8) -> String {
        let bytecode =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/contracts/TestToken.bin")).unwrap();
        let data = format!(
            "{}{}{}",
            bytecode.trim(),
            uint_word(u128::from(decimals)),
            uint_word(u128::MAX >> 1)
        );
        let hash = self.send(None, data).await;
        let receipt = self.receipt(&json!(hash)).await;
        receipt["contractAddress"]
            .as_str()
            .unwrap()
            .parse::<Address>()
            .unwrap()
            .to_checksum(None)
    }

    /// `token.transfer(to, raw)`; returns the transaction hash.
    pub async fn transfer(&self, token: &str, to: &str, raw: u128) -> String {
        let data = format!(
            "{}{}{}",
            selector("transfer(address,uint256)"),
            address_word(to),
            uint_word(raw)
        );
        self.send(Some(token), data).await
    }

    /// Two transfers in one transaction (two logs).
    pub async fn transfer_twice(&self, token: &str, a: &str, va: u128, b: &str, vb: u128) -> String {
        let data = format!(
            "{}{}{}{}{}",
            selector("transferTwice(address,uint256,address,uint256)"),
            address_word(a),
            uint_word(va),
            address_word(b),
            uint_word(vb)
        );
        self.send(Some(token), data).await
    }

    pub async fn mine(&self, blocks: u64) {
        self.rpc("anvil_mine", json!([format!("{blocks:#x}")])).await;
    }

    pub async fn height(&self) -> u64 {
        let h = self.rpc("eth_blockNumber", json!([])).await;
        u64::from_str_radix(h.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
    }

    pub async fn snapshot(&self) -> Value {
        self.rpc("evm_snapshot", json!([])).await
    }

    pub async fn revert(&self, id: Value) {
        assert_eq!(self.rpc("evm_revert", json!([id])).await, true);
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The BIP44 account key (m/44'/60'/0') of the "abandon ... about" test
/// mnemonic, as a wallet exports it; its receive address 0 is the published
/// 0x9858EfFD232B4033E47d90003D41EC34EcaEda94 (chains/src/account_key.rs).
pub const ABANDON_BSC_ACCOUNT_XPUB: &str =
    "xpub6DCoCpSuQZB2jawqnGMEPS63ePKWkwWPH4TU45Q7LPXWuNd8TMtVxRrgjtEshuqpK3mdhaWHPFsBngh5GFZaM6si3yZdUsT8ddYM3PwnATt";

/// `amount` whole tokens and `cents` hundredths, in 18-decimal raw units.
pub fn usdt(amount: u128, cents: u128) -> u128 {
    amount * 10u128.pow(18) + cents * 10u128.pow(16)
}
