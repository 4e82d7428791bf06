//! Every default of the configuration file, named, in one place. The
//! per-asset facts of the chains (confirmations, minimum amounts, amount
//! steps, expiry and late windows) are the state crate's: `Asset` and
//! `AssetPolicy::defaults`.

use std::time::Duration;

use paywatch_state::Asset;

pub const CONFIG_PATH: &str = "/etc/paywatch/paywatch.toml";
pub const LISTEN: &str = "127.0.0.1:8787";
pub const STATE_DIR: &str = "./paywatch-state";
/// `cluster.lease_ttl`: a dead leader's scanning and deliveries are taken
/// over within about this long.
pub const LEASE_TTL: Duration = Duration::from_secs(10);
pub const POLL_INTERVAL: Duration = Duration::from_secs(5);
/// Per remote call; a whole scan step gets `STEP_TIMEOUT_FACTOR` times this.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);
pub const STEP_TIMEOUT_FACTOR: u32 = 20;
/// First retry of a failing backend (at most the poll interval).
pub const RETRY_INITIAL: Duration = Duration::from_secs(1);
/// Longest wait between retries of a failing backend (`retry_max`).
pub const RETRY_MAX: Duration = Duration::from_secs(60);
/// Blocks per scan step (`max_blocks_per_poll`) for block-based backends.
pub const BLOCKS_PER_POLL: u64 = 50;
/// Blocks per `eth_getLogs` before a provider asks for less.
pub const EVM_BLOCKS_PER_POLL: u64 = 2_000;
/// Ledgers per rippled scan step.
pub const XRP_LEDGERS_PER_POLL: u64 = 1_000;
/// The rippled API version sent with every call.
pub const RIPPLED_API_VERSION: u8 = 2;
/// USDT on BNB Smart Chain (BEP-20).
pub const USDT_BSC_CONTRACT: &str = "0x55d398326f99059fF775485246999027B3197955";
pub const BSC_CHAIN_ID: u64 = 56;
/// TronGrid allows about 15 requests per second per key: stay under it.
pub const TRONGRID_MAX_RPS: f64 = 12.0;
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
pub const WEBHOOK_MAX_AGE: Duration = Duration::from_secs(72 * 3600);
pub const WEBHOOK_RETRY_INITIAL: Duration = Duration::from_secs(5);
pub const WEBHOOK_RETRY_MAX: Duration = Duration::from_secs(30 * 60);
pub const LOG_LEVEL: &str = "info";

/// How long an asset may go without reaching a moving tip before it is
/// flagged as lagging: a few times the chain's usual block interval (BTC
/// blocks often take an hour).
pub fn max_lag(asset: Asset) -> Duration {
    Duration::from_secs(match asset {
        Asset::Btc => 90 * 60,
        Asset::Ltc => 30 * 60,
        Asset::Xrp | Asset::UsdtBsc | Asset::UsdtTrc20 => 2 * 60,
    })
}

/// How long a chain's tip may stand still before rounds stop counting for
/// expiry: ten usual block intervals, at least 30 s (a stuck backend's
/// "tip" proves nothing about what came after it).
pub fn max_head_age(asset: Asset) -> Duration {
    let block = match asset {
        Asset::Btc => 600,
        Asset::Ltc => 150,
        Asset::Xrp => 4,
        Asset::UsdtBsc => 1,
        Asset::UsdtTrc20 => 3,
    };
    Duration::from_secs((block * 10).max(30))
}

/// The fiat currency of `[rates]` when `currencies` is not given.
pub const RATES_CURRENCY: &str = "USD";
/// How often rate sources are read.
pub const RATES_REFRESH: Duration = Duration::from_secs(30);
/// A quote older than this is never used.
pub const RATES_MAX_AGE: Duration = Duration::from_secs(120);
/// Longest wait for one rate source's answer.
pub const RATES_TIMEOUT: Duration = Duration::from_secs(5);
/// Fresh answers a quote needs, once outliers are left out.
pub const RATES_MIN_SOURCES: usize = 1;
/// How far from the median an answer may be and still count: 2 %.
pub const RATES_MAX_SPREAD: rust_decimal::Decimal = rust_decimal::Decimal::from_parts(2, 0, 0, false, 2);

/// Requests to the public checkout pages per client and minute (a page
/// polls its status every 5 s: 12 a minute).
pub const CHECKOUT_REQUESTS_PER_MINUTE: u32 = 120;
