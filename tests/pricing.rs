//! Intents priced in fiat, end to end through the binary: rates read from a
//! fake of the four tickers (their documented answer shapes), one of them
//! stale and one failing; the median, staleness, `rate_unavailable`, and a
//! fiat-priced LTC intent paid on litecoind.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::litecoind::Litecoind;
use common::paywatch::{Paywatch, start_ltc};
use common::tickers::FakeTickers;
use common::wait_for;
use serde_json::{Value, json};

/// `[rates]` reading every provider from the fake, fast.
fn rates_table(url: &str) -> String {
    let mut t = String::from(
        "\n[rates]\ncurrencies = [\"USD\", \"EUR\"]\nrefresh_interval = \"250ms\"\nmax_rate_age = \"3s\"\ntimeout = \"2s\"\n",
    );
    for provider in ["kraken", "coinbase", "binance", "coingecko"] {
        t.push_str(&format!(
            "[[rates.source]]\nprovider = \"{provider}\"\nurl = \"{url}\"\n"
        ));
    }
    t
}

/// Waits until `/v1/status` quotes `pair` at `wanted`.
async fn quote(pw: &Paywatch, pair: &str, wanted: &str) -> Value {
    wait_for(
        &format!("the {pair} quote {wanted}"),
        Duration::from_secs(20),
        || async {
            let q = pw.get("/v1/status").await["rates"]["quotes"][pair].clone();
            (q["rate"] == wanted).then_some(q)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fiat_price_is_fixed_at_the_median_of_fresh_rates_and_paid_in_ltc() {
    let node = Litecoind::start().await;
    let tickers = FakeTickers::start().await;
    tickers.set_price("kraken", "LTC", "USD", "70.10");
    tickers.set_price("coinbase", "LTC", "USD", "70.30");
    // CoinGecko answers, but its prices are ten minutes old: never used.
    tickers.set_price("coingecko", "LTC", "USD", "90.5");
    tickers.set_coingecko_age(600);
    tickers.set_price("binance", "LTC", "EUR", "65");
    tickers.set_price("kraken", "LTC", "EUR", "64");
    let url = node.url();
    let (_pool, pw) = start_ltc(&node, &url, 3, 1, &rates_table(&tickers.url), None).await;

    let usd = quote(&pw, "LTC/USD", "70.2").await;
    assert_eq!(usd["source"], "median of kraken, coinbase", "{usd}");
    let order = json!({"asset": "LTC", "fiat_amount": "49.99", "fiat_currency": "USD", "external_id": "order-1"});
    let intent = wait_for("the fiat create", Duration::from_secs(20), || async {
        let (status, v) = pw.post("/v1/intents", order.clone()).await;
        (status == 201).then_some(v)
    })
    .await;
    let id = intent["id"].as_str().unwrap();
    // 49.99 / 70.2 = 0.712108262..., rounded up to 8 decimals.
    assert_eq!(intent["amount"], "0.71210827", "{intent}");
    assert_eq!(
        (
            intent["fiat_amount"].as_str(),
            intent["fiat_currency"].as_str(),
            intent["rate"].as_str(),
            intent["rate_source"].as_str()
        ),
        (
            Some("49.99"),
            Some("USD"),
            Some("70.2"),
            Some("median of kraken, coinbase")
        )
    );
    assert!(intent["rate_at"].is_string());

    // The rate moves; a retry is still the same intent at its own rate.
    tickers.set_price("kraken", "LTC", "USD", "80");
    tickers.set_price("coinbase", "LTC", "USD", "80");
    quote(&pw, "LTC/USD", "80").await;
    let (status, again) = pw.post("/v1/intents", order.clone()).await;
    assert_eq!(
        (status, &again["id"], &again["amount"]),
        (200, &intent["id"], &intent["amount"])
    );
    let (status, conflict) = pw
        .post(
            "/v1/intents",
            json!({"asset": "LTC", "fiat_amount": "50", "fiat_currency": "USD", "external_id": "order-1"}),
        )
        .await;
    assert_eq!(
        (status, conflict["error"]["code"].as_str()),
        (409, Some("external_id_conflict"))
    );

    // EUR: Binance and Kraken answer; Coinbase has no EUR price; CoinGecko is stale.
    let eur = quote(&pw, "LTC/EUR", "64.5").await;
    assert_eq!(eur["source"], "median of kraken, binance");
    // CoinGecko answers every read, but nothing it holds is fresh, and it
    // leaves EUR out (said as a failure of that pair): not up.
    let gecko = pw.get("/v1/status").await["rates"]["sources"]["coingecko"].clone();
    assert_eq!(
        gecko["last_error"].as_str(),
        Some("no price for LTC/EUR in the answer"),
        "{gecko}"
    );
    let metrics = pw.metrics().await;
    for (source, up) in [("coingecko", 0), ("kraken", 1), ("binance", 1)] {
        assert!(
            metrics.contains(&format!("paywatch_rate_source_up{{source=\"{source}\"}} {up}")),
            "{source} {up}: {metrics}"
        );
    }
    let (status, v) = pw
        .post(
            "/v1/intents",
            json!({"asset": "LTC", "fiat_amount": "10", "fiat_currency": "eur"}),
        )
        .await;
    assert_eq!(
        (status, v["amount"].as_str(), v["fiat_currency"].as_str()),
        (201, Some("0.15503876"), Some("EUR"))
    );
    let (status, v) = pw
        .post(
            "/v1/intents",
            json!({"asset": "LTC", "fiat_amount": "10", "fiat_currency": "GBP"}),
        )
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (422, Some("currency_not_configured"))
    );
    for (body, code) in [
        (json!({"asset": "LTC", "fiat_amount": "10"}), "missing_field"),
        (
            json!({"asset": "LTC", "fiat_amount": 10, "fiat_currency": "USD"}),
            "invalid_fiat_amount",
        ),
        (
            json!({"asset": "LTC", "fiat_amount": "-1", "fiat_currency": "USD"}),
            "invalid_fiat_amount",
        ),
        (
            json!({"asset": "LTC", "fiat_amount": "10", "fiat_currency": "US"}),
            "invalid_fiat_currency",
        ),
        (
            json!({"asset": "LTC", "amount": "1", "fiat_amount": "10", "fiat_currency": "USD"}),
            "invalid_request",
        ),
    ] {
        let (status, v) = pw.post("/v1/intents", body.clone()).await;
        assert_eq!((status, v["error"]["code"].as_str()), (400, Some(code)), "{body}");
    }

    // Paid in LTC; every event shows the price it was made at.
    node.send(intent["address"].as_str().unwrap(), "0.71210827").await;
    let detected = pw.wait_event("intent.detected", Some(id)).await;
    assert_eq!(detected["intent"]["fiat_amount"], "49.99");
    node.mine(1).await;
    let confirmed = pw.wait_event("intent.confirmed", Some(id)).await;
    assert_eq!(
        (
            confirmed["intent"]["rate"].as_str(),
            confirmed["intent"]["flags"].as_array().map(Vec::len)
        ),
        (Some("70.2"), Some(0))
    );

    // Every source down or stale: no quote once the last answers age out,
    // and no create, but a retry of one made before is answered.
    for provider in ["kraken", "coinbase", "binance"] {
        tickers.set_failing(provider, true);
    }
    let gone = wait_for("the USD quote to go stale", Duration::from_secs(20), || async {
        let q = pw.get("/v1/status").await["rates"]["quotes"]["LTC/USD"].clone();
        q["error"].is_string().then_some(q)
    })
    .await;
    assert!(
        gone["error"].as_str().unwrap().contains("older than max_rate_age"),
        "{gone}"
    );
    let (status, v) = pw
        .post(
            "/v1/intents",
            json!({"asset": "LTC", "fiat_amount": "5", "fiat_currency": "USD"}),
        )
        .await;
    assert_eq!((status, v["error"]["code"].as_str()), (503, Some("rate_unavailable")));
    let (status, again) = pw.post("/v1/intents", order).await;
    assert_eq!((status, &again["id"]), (200, &intent["id"]));
    let status = pw.get("/v1/status").await;
    let kraken = &status["rates"]["sources"]["kraken"];
    assert!(
        kraken["errors"].as_u64().unwrap() > 0 && kraken["last_error"].is_string(),
        "{kraken}"
    );
    let metrics = pw.metrics().await;
    assert!(
        metrics.contains("paywatch_rate_source_up{source=\"kraken\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("paywatch_rate_errors_total{source=\"kraken\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_rates_a_fiat_price_is_refused_and_a_fixed_rate_prices_usdt() {
    let node = Litecoind::start().await;
    let url = node.url();
    let (_pool, pw) = start_ltc(&node, &url, 1, 1, "", None).await;
    let body = json!({"asset": "LTC", "fiat_amount": "10", "fiat_currency": "USD"});
    let (status, v) = wait_for("an answer", Duration::from_secs(20), || async {
        let (status, v) = pw.post("/v1/intents", body.clone()).await;
        (status != 503).then_some((status, v))
    })
    .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (422, Some("fiat_not_configured"))
    );
    // No [checkout] either: no pages, and intents have no checkout_url.
    let intent = pw.ltc_intent("0.1").await;
    assert!(intent.get("checkout_url").is_none(), "{intent}");
    let page = reqwest::get(format!("http://127.0.0.1:{}/pay/{}", pw.api_port, "a".repeat(32)))
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 404);
    assert_eq!(page.headers()["x-paywatch-error"], "checkout_disabled");
    drop(pw);

    // A stablecoin at its peg, from a fixed rate: no network at all.
    let tron = common::tron::FakeTron::start(66_000_000).await;
    let tron_url = tron.url.clone();
    let merchant = paywatch_chains::tron::parse_tron_address(&format!("41{}", "33".repeat(20)))
        .unwrap()
        .1;
    let pw = Paywatch::start(
        |dir| {
            format!(
                "{}\n[rates]\n[[rates.source]]\nprovider = \"fixed\"\nrates = {{ \"USDT_TRC20/USD\" = \"1\" }}\n",
                common::configs::usdt_trc20(dir, &tron_url, &[merchant], "key")
            )
        },
        None,
    )
    .await;
    let intent = wait_for("the fiat create", Duration::from_secs(20), || async {
        let (status, v) = pw
            .post(
                "/v1/intents",
                json!({"asset": "USDT_TRC20", "fiat_amount": "12.345", "fiat_currency": "USD"}),
            )
            .await;
        (status == 201).then_some(v)
    })
    .await;
    assert_eq!(
        (
            intent["amount"].as_str(),
            intent["rate"].as_str(),
            intent["rate_source"].as_str()
        ),
        (Some("12.350000"), Some("1"), Some("fixed")),
        "unique amounts step in cents: rounded up to the cent"
    );
}
