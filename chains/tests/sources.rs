//! Chain sources as the daemon uses them, data in and data out: a scan
//! request (cursor, the hashes stored below it, the watch set) against a
//! real node or a fake one, and the batch it returns; a reorg found from the
//! request's hashes alone. Nodes and fakes come from `paywatch-testenv`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use paywatch_chains::http::Endpoints;
use paywatch_chains::rpc::{RpcAuth, RpcClient};
use paywatch_chains::source::{ChainSource, RecentBlocks, ScanBatch, ScanRequest};
use paywatch_chains::tron::{TronSource, USDT_TRC20_CONTRACT, base58_of};
use paywatch_chains::utxo::core_rpc::CoreRpc;
use paywatch_chains::utxo::source::UtxoSource;
use paywatch_chains::watch::{WatchSet, next_watch_version};
use paywatch_chains::{ChainError, Network};
use paywatch_state::{Asset, BlockRef};
use paywatch_testenv::litecoind::{Litecoind, RPC_PASSWORD};
use paywatch_testenv::tron::{FakeTron, USDT_HEX};

fn watching(address: &str) -> WatchSet {
    WatchSet {
        version: next_watch_version(),
        addresses: [address.to_string()].into(),
        hot: [address.to_string()].into(),
        ..WatchSet::default()
    }
}

/// What the store would keep after applying `batch`: its blocks' hashes.
fn kept(known: &mut RecentBlocks, batch: &ScanBatch) {
    if let Some(fork) = batch.rollback_to {
        known.split_off(&(fork + 1));
    }
    known.extend(batch.blocks.iter().map(|b| (b.height, b.hash.clone())));
}

async fn scan(source: &dyn ChainSource, from: &BlockRef, to: u64, watch: &WatchSet, known: &RecentBlocks) -> ScanBatch {
    source
        .scan(ScanRequest { from, to, watch, known })
        .await
        .expect("a scan step")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tron_blocks_are_walked_and_a_fork_is_found_from_the_stored_hashes() {
    paywatch_testenv::install_tls();
    let tron = FakeTron::start(5_000).await;
    tron.produce(3);
    let endpoints = Endpoints::new(vec![tron.url.clone()], Duration::from_secs(5)).unwrap();
    let source = TronSource::new(endpoints, None, USDT_TRC20_CONTRACT, Network::Mainnet, 50).unwrap();
    source.preflight().await.expect("mainnet genesis and 6 decimals");
    let merchant = [7u8; 20];
    let watch = watching(&base58_of(&merchant));

    let tip = source.tip().await.unwrap();
    // The fake's blocks are 3 s apart from a fixed start, as the recorded
    // getnowblock answer's timestamp (milliseconds).
    let made = source.tip_time(&tip).await.unwrap().expect("the tip's time");
    assert_eq!(made.timestamp_millis(), 1_777_445_307_000 + 3_000 * tip.height as i64);
    let start = BlockRef {
        height: tip.height,
        hash: tip.hash,
    };
    let mut known: RecentBlocks = BTreeMap::from([(start.height, start.hash.clone())]);
    let paid = tron.transfer(USDT_HEX, &hex::encode(merchant), 3_500_000, "SUCCESS");
    tron.produce(4);
    let batch = scan(&source, &start, tron.head(), &watch, &known).await;
    assert_eq!(batch.rollback_to, None);
    assert_eq!(batch.blocks.len(), 4, "{batch:?}");
    assert_eq!(batch.observations.len(), 1);
    assert_eq!(batch.observations[0].txid, paid);
    assert_eq!(batch.observations[0].amount.to_string(), "3.500000");
    kept(&mut known, &batch);
    let cursor = batch.cursor.clone().expect("a cursor");

    // The last two blocks are replaced: the source finds where the chains
    // meet from the hashes the request carries, and reads the new branch.
    tron.fork_from(cursor.height - 1, 3);
    let after = scan(&source, &cursor, tron.head(), &watch, &known).await;
    assert_eq!(after.rollback_to, Some(cursor.height - 2));
    assert_eq!(after.blocks.first().map(|b| b.height), Some(cursor.height - 1));
    assert!(
        after.observations.is_empty(),
        "the transfer's block was kept: {after:?}"
    );

    // With no stored hash below the cursor, a changed block cannot be
    // placed: the asset stops rather than guess.
    let moved = after.cursor.clone().expect("a cursor");
    tron.fork_from(moved.height, 2);
    let lone = BTreeMap::from([(moved.height, moved.hash.clone())]);
    let refused = source
        .scan(ScanRequest {
            from: &moved,
            to: tron.head(),
            watch: &watch,
            known: &lone,
        })
        .await
        .expect_err("no common block");
    assert!(matches!(refused, ChainError::Config(_)), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn litecoin_blocks_are_walked_and_a_reorg_is_found_from_the_stored_hashes() {
    paywatch_testenv::install_tls();
    let node = Litecoind::start().await;
    let rpc = RpcClient::new(
        Endpoints::new(vec![node.url()], Duration::from_secs(10)).unwrap(),
        RpcAuth::UserPassword {
            user: "u".into(),
            password: paywatch_chains::Secret::new(RPC_PASSWORD),
        },
    );
    let source = UtxoSource::new(Asset::Ltc, Network::Regtest, CoreRpc::new(rpc), 50);
    source.preflight().await.expect("Litecoin regtest genesis");
    // The tip's time, read from its header, is the node's own.
    let tip = source.tip().await.unwrap();
    let header = node.rpc("getblockheader", serde_json::json!([tip.hash])).await;
    let made = source.tip_time(&tip).await.unwrap().expect("the tip's time");
    assert_eq!(Some(made.timestamp()), header["time"].as_i64());
    // The same through Esplora's `/block/:hash` (its `timestamp`).
    let esplora = paywatch_testenv::esplora::FakeEsplora::start(node.url()).await;
    let through_esplora = UtxoSource::new(
        Asset::Ltc,
        Network::Regtest,
        paywatch_chains::utxo::esplora::Esplora::new(
            Endpoints::new(vec![esplora.url.clone()], Duration::from_secs(10)).unwrap(),
            Asset::Ltc,
        ),
        50,
    );
    assert_eq!(through_esplora.tip_time(&tip).await.unwrap(), Some(made));
    let unknown = paywatch_state::ChainTip {
        height: tip.height,
        hash: "00".repeat(32),
        finalized: None,
    };
    assert_eq!(
        through_esplora.tip_time(&unknown).await.unwrap(),
        None,
        "a block it does not hold"
    );
    assert_eq!(
        source.tip_time(&unknown).await.unwrap(),
        None,
        "a block it does not hold"
    );
    let merchant = node.new_address().await;
    let watch = watching(&merchant);

    let start = BlockRef {
        height: node.height().await,
        hash: node.best_hash().await,
    };
    let mut known: RecentBlocks = BTreeMap::from([(start.height, start.hash.clone())]);
    let paid = node.send(&merchant, "0.25").await;
    node.mine(3).await;
    let batch = scan(&source, &start, node.height().await, &watch, &known).await;
    assert_eq!((batch.rollback_to, batch.blocks.len()), (None, 3));
    assert_eq!(batch.observations.len(), 1, "{batch:?}");
    assert_eq!(batch.observations[0].txid, paid);
    kept(&mut known, &batch);
    let cursor = batch.cursor.clone().expect("a cursor");

    // Two blocks are invalidated and a longer branch is mined instead.
    let replaced = node.rpc("getblockhash", serde_json::json!([cursor.height - 1])).await;
    node.rpc("invalidateblock", serde_json::json!([replaced])).await;
    node.mine(4).await;
    let after = scan(&source, &cursor, node.height().await, &watch, &known).await;
    assert_eq!(after.rollback_to, Some(cursor.height - 2));
    assert_eq!(after.cursor.map(|c| c.height), Some(node.height().await));
}
