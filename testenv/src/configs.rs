//! `[assets.*]` tables for the chains the tests run, shared by the test files.

use std::path::Path;

fn list(addresses: &[String]) -> String {
    addresses
        .iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Fast polling and short retries, for tests.
const FAST: &str = "poll_interval = \"250ms\"\ntimeout = \"2s\"\nretry_max = \"1s\"\n";

/// A Core-RPC asset (LTC, or BTC over the same regtest node).
pub fn core_rpc(dir: &Path, asset: &str, url: &str, addresses: &[String], confirmations: u32) -> String {
    let pw = dir.join(format!("{asset}-rpc-password"));
    std::fs::write(&pw, format!("{}\n", super::litecoind::RPC_PASSWORD)).unwrap();
    format!(
        "[assets.{asset}]\nbackend = \"core-rpc\"\nurl = \"{url}\"\nrpc_user = \"u\"\nrpc_password_file = \"{}\"\nnetwork = \"regtest\"\n\
         addresses = [{}]\nconfirmations = {confirmations}\n{FAST}\n",
        pw.display(),
        list(addresses)
    )
}

pub fn usdt_bsc(url: &str, token: &str, addresses: &[String]) -> String {
    format!(
        "[assets.USDT_BSC]\nbackend = \"evm\"\nurl = \"{url}\"\ncontract = \"{token}\"\naddresses = [{}]\n{FAST}\n",
        list(addresses)
    )
}

/// USDT_BSC with an address of its own per intent or account, derived
/// from the abandon mnemonic's BIP44 account xpub.
pub fn usdt_bsc_derived(url: &str, token: &str) -> String {
    format!(
        "{}match = \"address\"\nxpub = \"{}\"\n",
        usdt_bsc(url, token, &[]),
        super::anvil::ABANDON_BSC_ACCOUNT_XPUB
    )
}

pub fn xrp(url: &str, addresses: &[String]) -> String {
    format!(
        "[assets.XRP]\nbackend = \"rippled\"\nurl = \"{url}\"\naddresses = [{}]\n{FAST}\n",
        list(addresses)
    )
}

/// Writes the API key file and returns the table.
pub fn usdt_trc20(dir: &Path, url: &str, addresses: &[String], api_key: &str) -> String {
    let key = dir.join("trongrid-key");
    std::fs::write(&key, format!("{api_key}\n")).unwrap();
    format!(
        "[assets.USDT_TRC20]\nbackend = \"tron-http\"\nurl = \"{url}\"\napi_key_file = \"{}\"\naddresses = [{}]\n{FAST}\n",
        key.display(),
        list(addresses)
    )
}
