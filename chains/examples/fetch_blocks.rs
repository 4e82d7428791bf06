//! Baseline for the catch-up benchmark: the plainest possible loop that
//! fetches raw blocks `FROM..=TO` from a node (getblockhash, then getblock
//! HASH 0, hex-decoded), over the same HTTP client paywatch uses. Prints the
//! seconds it took and the bytes fetched.
//!
//! `cargo run --release -p paywatch-chains --example fetch_blocks -- URL USER PASSWORD FROM TO`

use std::time::{Duration, Instant};

use paywatch_chains::http::Endpoints;
use paywatch_chains::rpc::{RpcAuth, RpcClient};
use paywatch_chains::{ChainError, Secret};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), ChainError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, user, password, from, to] = args.as_slice() else {
        eprintln!("usage: fetch_blocks URL USER PASSWORD FROM TO");
        std::process::exit(2);
    };
    let auth = RpcAuth::UserPassword {
        user: user.clone(),
        password: Secret::new(password.clone()),
    };
    let rpc = RpcClient::new(Endpoints::new(vec![url.clone()], Duration::from_secs(30))?, auth);
    let (from, to): (u64, u64) = (from.parse().unwrap_or(0), to.parse().unwrap_or(0));
    let started = Instant::now();
    let mut bytes = 0usize;
    for height in from..=to {
        let hash: String = rpc.call("getblockhash", json!([height])).await?;
        let hex_text: String = rpc.call("getblock", json!([hash, 0])).await?;
        bytes += hex::decode(hex_text)
            .map_err(|e| ChainError::garbage("getblock", e))?
            .len();
    }
    println!("{:.4} {bytes}", started.elapsed().as_secs_f64());
    Ok(())
}
