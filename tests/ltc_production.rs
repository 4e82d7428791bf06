//! LTC on real Litecoin Core regtest under production conditions: a shop
//! client that hangs up mid-create and retries, and a backup node behind the
//! primary taking over while a payment confirms.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;
use tokio::io::AsyncWriteExt;

use common::configs;
use common::litecoind::Litecoind;
use common::paywatch::{Paywatch, TOKEN, start_ltc};
use common::proxy::Proxy;
use common::rpc_proxy::RpcProxy;
use common::{types_for, wait_for};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intent_whose_client_hung_up_is_watched_all_the_same() {
    let node = Litecoind::start().await;
    let url = node.url();
    let (_pool, pw) = start_ltc(&node, &url, 6, 1, "", None).await;
    let mut intents = Vec::new();
    for n in 0..6 {
        let body = json!({"asset": "LTC", "amount": "0.3", "external_id": format!("order-{n}")}).to_string();
        // The shop's HTTP client times out: the request is sent, then the
        // connection is reset before any answer.
        let request = format!(
            "POST /v1/intents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", pw.api_port))
            .await
            .unwrap();
        socket.write_all(request.as_bytes()).await.unwrap();
        // Hung up at once, or after the daemon may have read the request:
        // on a loaded machine a reset at once can beat the read (nothing
        // committed), so later hang-ups make sure some commits lose their client.
        tokio::time::sleep(Duration::from_millis([0, 1, 2, 5, 10, 25][n])).await;
        socket.set_zero_linger().unwrap();
        drop(socket);
        // It retries with the same external_id and gets the intent.
        let retried = wait_for("the retried create", Duration::from_secs(10), || async {
            let (status, v) = pw
                .post(
                    "/v1/intents",
                    json!({"asset": "LTC", "amount": "0.3", "external_id": format!("order-{n}")}),
                )
                .await;
            (status == 200 || status == 201).then_some((status, v))
        })
        .await;
        intents.push(retried);
    }
    assert!(
        intents.iter().any(|(status, _)| *status == 200),
        "some creates committed after their client hung up: {:?}",
        intents.iter().map(|(s, _)| s).collect::<Vec<_>>()
    );
    let intents: Vec<serde_json::Value> = intents.into_iter().map(|(_, v)| v).collect();
    for i in &intents {
        node.send(i["address"].as_str().unwrap(), "0.3").await;
    }
    node.mine(1).await;
    for i in &intents {
        pw.wait_status(i["id"].as_str().unwrap(), "confirmed").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_behind_the_primary_never_reverts_nor_detects_twice() {
    let node = Litecoind::start().await;
    let primary = Proxy::start(node.rpc_port).await;
    let backup = RpcProxy::start(node.url(), 1).await;
    let urls = format!("[\"{}\", \"{}\"]", primary.url(), backup.url);
    let pool = node.new_addresses(2).await;
    let pw = Paywatch::start(
        |dir| configs::core_rpc(dir, "LTC", "URLS", &pool, 3).replace("\"URLS\"", &urls),
        None,
    )
    .await;
    backup.lag_core_always(4);
    let intent = pw
        .create(json!({"asset": "LTC", "amount": "0.4", "expires_in": 3}))
        .await;
    let id = intent["id"].as_str().unwrap();
    node.send(intent["address"].as_str().unwrap(), "0.4").await;
    node.mine(1).await;
    wait_for("1 confirmation", Duration::from_secs(20), || async {
        (pw.intent(id).await["confirmations"] == 1).then_some(())
    })
    .await;
    // The primary goes down; the backup, 4 blocks behind, answers alone,
    // past the intent's expiry.
    primary.set_up(false);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let status = pw.get("/v1/status").await;
    let ltc = &status["assets"]["LTC"];
    assert_eq!(ltc["healthy"], false, "{status}");
    assert!(ltc["last_error"].as_str().unwrap().contains("behind"), "{status}");
    assert_eq!(ltc["endpoints"][0]["healthy"], false, "{status}");
    assert_eq!(
        pw.intent(id).await["status"],
        "detected",
        "neither reverted nor expired"
    );
    // The primary comes back: the payment confirms, once.
    primary.set_up(true);
    node.mine(2).await;
    pw.wait_status(id, "confirmed").await;
    assert_eq!(
        types_for(&pw.events().await, id),
        ["intent.detected", "intent.confirmed"]
    );
    let metrics = pw.metrics().await;
    assert!(
        metrics.contains("paywatch_endpoint_up{asset=\"LTC\",endpoint=\"1\"}"),
        "{metrics}"
    );
}
