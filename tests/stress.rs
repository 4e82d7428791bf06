//! The guarantees under faults, with all five assets at once: litecoind
//! (LTC, and BTC over the same node), anvil (USDT_BSC), a fake rippled (XRP)
//! and a fake Tron node (USDT_TRC20).
//!
//! - SIGKILL at varied moments, several times: every intent reaches its final
//!   state exactly once, `seq` has no gap or duplicate, the webhook receiver
//!   saw every event id, no block or ledger was skipped, no secret was logged.
//! - Each backend unreachable in turn across an intent's expiry: its payments
//!   are found afterwards, nothing expires early, the other assets keep
//!   working, status and metrics show the outage.
//! - The webhook receiver down past `max_age`: that delivery is marked failed
//!   and visible, later ones go out in order.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::anvil::Anvil;
use common::configs;
use common::litecoind::{Litecoind, RPC_PASSWORD};
use common::paywatch::{Paywatch, TOKEN, WEBHOOK_SECRET};
use common::proxy::Proxy;
use common::receiver::{Receiver, signature_valid};
use common::rippled::{FakeRippled, MERCHANT as XRP_MERCHANT};
use common::rpc_proxy::RpcProxy;
use common::tron::{FakeTron, USDT_HEX};
use common::wait_for;
use paywatch_chains::Network;
use paywatch_chains::tron::parse_tron_address;
use paywatch_chains::utxo::address::{parse_ltc, script_address};
use paywatch_state::Asset;
use serde_json::{Value, json};

const TRON_MERCHANT_HEX: &str = "cdae4e9a6287333a3f7df432b050af7b17e79e63";
const TRON_API_KEY: &str = "trongrid-key-7d1f0b";
const ASSETS: [&str; 5] = ["LTC", "BTC", "USDT_BSC", "XRP", "USDT_TRC20"];

/// Every chain, and the proxies in front of them (for outages).
struct World {
    ltc: Litecoind,
    anvil: Anvil,
    token: String,
    rippled: FakeRippled,
    tron: FakeTron,
    ltc_pool: Vec<String>,
    /// BTC (bcrt1) address -> the same witness program as a node (rltc1) address.
    btc_pool: HashMap<String, String>,
    proxies: HashMap<&'static str, Proxy>,
    /// BTC's node: the LTC node dressed as Bitcoin Core.
    _bitcoin: RpcProxy,
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().trim_end_matches('/').parse().unwrap()
}

impl World {
    async fn new() -> World {
        let ltc = Litecoind::start().await;
        let anvil = Anvil::start().await;
        let token = anvil.deploy_token(18).await;
        let rippled = FakeRippled::start(90_000_000).await;
        let tron = FakeTron::start(66_000_000).await;
        let mut ltc_pool = Vec::new();
        for _ in 0..6 {
            ltc_pool.push(ltc.new_address().await);
        }
        let mut btc_pool = HashMap::new();
        for _ in 0..6 {
            let rltc = ltc.new_address().await;
            let script = parse_ltc(Network::Regtest, &rltc).unwrap().script;
            btc_pool.insert(script_address(Asset::Btc, Network::Regtest, &script).unwrap(), rltc);
        }
        let mut proxies = HashMap::new();
        proxies.insert("LTC", Proxy::start(ltc.rpc_port).await);
        let bitcoin = RpcProxy::bitcoin_over(ltc.url()).await;
        proxies.insert("BTC", Proxy::start(bitcoin.port()).await);
        proxies.insert("USDT_BSC", Proxy::start(anvil.port).await);
        proxies.insert("XRP", Proxy::start(port_of(&rippled.url)).await);
        proxies.insert("USDT_TRC20", Proxy::start(port_of(&tron.url)).await);
        World {
            ltc,
            anvil,
            token,
            rippled,
            tron,
            ltc_pool,
            btc_pool,
            _bitcoin: bitcoin,
            proxies,
        }
    }

    fn config(&self, dir: &std::path::Path) -> String {
        let url = |asset: &str| self.proxies[asset].url();
        let btc: Vec<String> = self.btc_pool.keys().cloned().collect();
        [
            configs::core_rpc(dir, "LTC", &url("LTC"), &self.ltc_pool, 1),
            configs::core_rpc(dir, "BTC", &url("BTC"), &btc, 1),
            configs::usdt_bsc(&url("USDT_BSC"), &self.token, &[self.anvil.accounts[1].clone()]),
            configs::xrp(&url("XRP"), &[XRP_MERCHANT.to_string()]),
            configs::usdt_trc20(
                dir,
                &url("USDT_TRC20"),
                &[parse_tron_address(&format!("41{TRON_MERCHANT_HEX}")).unwrap().1],
                TRON_API_KEY,
            ),
        ]
        .join("\n")
    }

    /// Pays an intent exactly its `pay_amount` on its chain.
    async fn pay(&self, intent: &Value) {
        let amount = intent["pay_amount"].as_str().unwrap();
        let address = intent["address"].as_str().unwrap();
        let raw = || -> u128 { amount.replace('.', "").trim_start_matches('0').parse().unwrap() };
        match intent["asset"].as_str().unwrap() {
            "LTC" => drop(self.ltc.send(address, amount).await),
            "BTC" => drop(self.ltc.send(&self.btc_pool[address], amount).await),
            "USDT_BSC" => drop(self.anvil.transfer(&self.token, address, raw()).await),
            "XRP" => drop(self.rippled.pay(raw() as u64, intent["tag"].as_u64())),
            "USDT_TRC20" => drop(self.tron.transfer(USDT_HEX, TRON_MERCHANT_HEX, raw(), "SUCCESS")),
            other => panic!("{other}"),
        }
    }

    /// Moves every chain forward: new blocks, and finality for the chains
    /// that have it (anvil finalizes 64 blocks back).
    async fn advance(&self) {
        self.ltc.mine(1).await;
        self.anvil.mine(70).await;
        self.rippled.close(1);
        self.tron.produce(3);
        self.tron.solidify_with_lag(0);
    }

    /// Tip height per asset, as the chains say.
    async fn tips(&self) -> HashMap<&'static str, u64> {
        let ltc = self.ltc.height().await;
        HashMap::from([
            ("LTC", ltc),
            ("BTC", ltc),
            ("USDT_BSC", self.anvil.height().await),
            ("XRP", self.rippled.validated()),
            ("USDT_TRC20", self.tron.head()),
        ])
    }
}

fn amount_for(asset: &str, n: usize) -> String {
    match asset {
        "LTC" | "BTC" => format!("0.{}", n + 1),
        _ => format!("{}", n + 1),
    }
}

async fn all_scanned(pw: &Paywatch, world: &World) {
    let tips = world.tips().await;
    wait_for("every asset scanned to its tip", Duration::from_secs(60), || async {
        let status = pw.get("/v1/status").await;
        ASSETS
            .iter()
            .all(|a| status["assets"][a]["scanned_height"].as_u64() == Some(tips[a]))
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_varied_moments_with_all_five_assets_loses_and_duplicates_nothing() {
    let receiver = Receiver::start().await;
    let world = World::new().await;
    let mut pw = Paywatch::start(|dir| world.config(dir), Some(&receiver.url)).await;
    let mut intents = Vec::new();
    for (n, asset) in ASSETS.iter().cycle().take(15).enumerate() {
        intents.push(
            pw.create(json!({"asset": asset, "amount": amount_for(asset, n / 5), "expires_in": 3600}))
                .await,
        );
        if n % 4 == 3 {
            pw.restart().await; // right after acknowledged creates
        }
    }
    // A deterministic spread of kill moments: before, during and after the
    // scans that see each payment; sometimes with blocks to catch up.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for (n, intent) in intents.iter().enumerate() {
        world.pay(intent).await;
        if n % 3 == 0 {
            world.advance().await;
        }
        if n % 2 == 0 {
            tokio::time::sleep(Duration::from_millis(next() % 400)).await;
            pw.kill9();
            if n % 4 == 0 {
                world.ltc.mine(30).await; // down while blocks arrive
            }
            pw.resume().await;
        }
    }
    world.advance().await;
    world.ltc.mine(1).await;
    pw.restart().await;
    for intent in &intents {
        pw.wait_status(intent["id"].as_str().unwrap(), "confirmed").await;
    }
    all_scanned(&pw, &world).await;

    let events = pw.events().await;
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "seq has no gap and no duplicate"
    );
    for intent in &intents {
        let id = intent["id"].as_str().unwrap();
        let kinds: Vec<&str> = events
            .iter()
            .filter(|e| e["intent"]["id"] == id)
            .map(|e| e["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            ["intent.detected", "intent.confirmed"],
            "{} {id}",
            intent["asset"]
        );
        let v = pw.intent(id).await;
        assert_eq!(
            (v["received"].clone(), v["payments"].as_array().unwrap().len()),
            (intent["pay_amount"].clone(), 1),
            "counted once: {v}"
        );
    }
    let all_ids: HashSet<String> = events.iter().map(|e| e["id"].as_str().unwrap().to_string()).collect();
    wait_for("the receiver to have every event", Duration::from_secs(30), || async {
        let got: HashSet<String> = receiver.accepted_unique().into_iter().map(|d| d.event_id).collect();
        (got == all_ids).then_some(())
    })
    .await;
    assert!(
        receiver
            .deliveries()
            .iter()
            .all(|d| signature_valid(WEBHOOK_SECRET, &d.signature, &d.body))
    );
    // Secrets never reach the logs of the whole run.
    let logs = pw.logs();
    assert!(logs.len() > 1000, "the run logged");
    for secret in [TOKEN, WEBHOOK_SECRET, RPC_PASSWORD, TRON_API_KEY] {
        assert!(!logs.contains(secret), "a secret appears in the logs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_backend_down_across_an_expiry_delays_only_its_own_asset() {
    let world = World::new().await;
    let pw = Paywatch::start(|dir| world.config(dir), None).await;
    for down in ASSETS {
        let victim = pw
            .create(json!({"asset": down, "amount": amount_for(down, 0), "expires_in": 2}))
            .await;
        let victim_id = victim["id"].as_str().unwrap();
        let others: Vec<Value> = {
            let mut v = Vec::new();
            for asset in ASSETS.iter().filter(|a| **a != down) {
                v.push(
                    pw.create(json!({"asset": asset, "amount": amount_for(asset, 0), "expires_in": 3600}))
                        .await,
                );
            }
            v
        };
        world.proxies[down].set_up(false);
        world.pay(&victim).await;
        for o in &others {
            world.pay(o).await;
        }
        world.advance().await;
        // The others confirm while one backend is down.
        for o in &others {
            pw.wait_status(o["id"].as_str().unwrap(), "confirmed").await;
        }
        let deadline: chrono::DateTime<chrono::Utc> = victim["expires_at"].as_str().unwrap().parse().unwrap();
        wait_for("the deadline", Duration::from_secs(10), || async {
            (chrono::Utc::now() > deadline + chrono::Duration::seconds(1)).then_some(())
        })
        .await;
        let status = wait_for("the outage in status", Duration::from_secs(20), || async {
            let s = pw.get("/v1/status").await;
            (s["assets"][down]["healthy"] == false).then_some(s)
        })
        .await;
        for asset in ASSETS.iter().filter(|a| **a != down) {
            assert_eq!(status["assets"][asset]["healthy"], true, "{asset} while {down} is down");
        }
        assert_eq!(
            pw.intent(victim_id).await["status"],
            "awaiting",
            "{down}: no expiry without a successful scan"
        );
        world.proxies[down].set_up(true);
        world.advance().await;
        let confirmed = pw.wait_event("intent.confirmed", Some(victim_id)).await;
        assert_eq!(
            confirmed["intent"]["received"], victim["pay_amount"],
            "{down}: paid in time, seen late"
        );
    }
    let metrics = pw.metrics().await;
    for asset in ASSETS {
        assert!(
            metrics.contains(&format!("paywatch_poll_errors_total{{asset=\"{asset}\",kind=")),
            "{asset} outage in metrics"
        );
    }
    assert!(
        !pw.events().await.iter().any(|e| e["type"] == "intent.expired"),
        "nothing expired early"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_receiver_down_past_max_age_gets_the_rest_in_order() {
    let receiver = Receiver::start().await;
    receiver.set_failing(true);
    let rippled = FakeRippled::start(90_000_000).await;
    let url = rippled.url.clone();
    let hook = receiver.url.clone();
    let pw = Paywatch::start(
        |dir| {
            let secret = dir.join("webhook-secret");
            std::fs::write(&secret, WEBHOOK_SECRET).unwrap();
            // Own [webhook] table: a short max_age.
            format!(
                "[webhook]\nurl = \"{hook}\"\nsecret_file = \"{}\"\ntimeout = \"1s\"\nretry_initial = \"200ms\"\nretry_max = \"500ms\"\nmax_age = \"3s\"\n\n{}",
                secret.display(),
                configs::xrp(&url, &[XRP_MERCHANT.to_string()])
            )
        },
        None,
    )
    .await;
    let first = pw.create(json!({"asset": "XRP", "amount": "1"})).await;
    let second = pw.create(json!({"asset": "XRP", "amount": "2"})).await;
    rippled.pay(1_000_000, first["tag"].as_u64());
    rippled.close(1);
    pw.wait_event("intent.confirmed", Some(first["id"].as_str().unwrap()))
        .await;
    // Two events for the first intent wait; past max_age they are given up.
    let status = wait_for("failed deliveries", Duration::from_secs(30), || async {
        let s = pw.get("/v1/status").await;
        (s["webhooks"]["failed"] == 2).then_some(s)
    })
    .await;
    assert_eq!(status["webhooks"]["backlog"], 0);
    let metrics = pw.metrics().await;
    assert!(
        metrics.contains("paywatch_webhook_deliveries_total{outcome=\"failed\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("paywatch_webhook_failed 2"), "{metrics}");
    // The receiver comes back: later events are delivered, in order.
    receiver.set_failing(false);
    rippled.pay(2_000_000, second["tag"].as_u64());
    rippled.close(1);
    let second_id = second["id"].as_str().unwrap();
    wait_for("the second intent's events", Duration::from_secs(20), || async {
        let got: Vec<String> = receiver
            .accepted_unique()
            .iter()
            .map(|d| d.json()["type"].as_str().unwrap().to_string())
            .collect();
        (got == ["intent.detected", "intent.confirmed"]).then_some(())
    })
    .await;
    assert!(
        receiver
            .accepted_unique()
            .iter()
            .all(|d| d.json()["intent"]["id"] == second_id),
        "the given-up events stay given up"
    );
}
