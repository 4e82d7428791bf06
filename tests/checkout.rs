//! The hosted checkout page in a real headless Chromium: amount, address
//! and QR read off the page, a payment on litecoind seen moving the page to
//! detected and to confirmed without a reload; an XRP page with its tag; and
//! over plain HTTP what a customer's browser without JavaScript, or a prying
//! one, gets. With `PAYWATCH_SCREENSHOTS=DIR` the phone and desktop
//! screenshots of docs/ are written there.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::chromium::{Browser, decode_qr_svg};
use common::litecoind::Litecoind;
use common::paywatch::{Paywatch, start_ltc};
use common::rippled::{FakeRippled, MERCHANT};
use common::wait_for;
use serde_json::{Value, json};

/// The shop's public origin; tests reach the same paths on paywatch itself.
const BASE: &str = "https://shop.example/pay";

fn checkout_table(extra: &str) -> String {
    format!("\n[checkout]\nbase_url = \"{BASE}\"\n{extra}")
}

/// Where the page of `intent` is on paywatch itself.
fn local_page(pw: &Paywatch, intent: &Value) -> (String, String) {
    let url = intent["checkout_url"].as_str().expect("a checkout_url");
    assert!(url.starts_with(&format!("{BASE}/")), "{url}");
    let token = url.rsplit('/').next().unwrap().to_string();
    assert_eq!(token.len(), 32);
    assert!(!url.contains(intent["id"].as_str().unwrap()), "never the intent id");
    (format!("http://127.0.0.1:{}/pay/{token}", pw.api_port), token)
}

async fn screenshot(page: &common::chromium::Page<'_>, name: &str) {
    if let Some(dir) = std::env::var_os("PAYWATCH_SCREENSHOTS") {
        page.screenshot(&std::path::Path::new(&dir).join(name)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_pays_from_the_page_and_watches_it_confirm_without_reloading() {
    let node = Litecoind::start().await;
    let url = node.url();
    let (_pool, pw) = start_ltc(&node, &url, 2, 1, &checkout_table(""), None).await;
    let intent = pw
        .create(json!({"asset": "LTC", "amount": "0.5", "external_id": "order-77", "metadata": {"customer_email": "c@example.com"}}))
        .await;
    let (page_url, _) = local_page(&pw, &intent);
    let address = intent["address"].as_str().unwrap();

    // Without JavaScript: everything needed is in the HTML, nothing more.
    let answer = reqwest::get(&page_url).await.unwrap();
    let headers = answer.headers().clone();
    let html = answer.text().await.unwrap();
    assert!(html.contains(address) && html.contains(">0.5<") && html.contains("Waiting for your payment"));
    assert!(
        html.contains("http-equiv=\"refresh\""),
        "refreshes itself without JavaScript"
    );
    for secret in ["order-77", "c@example.com", intent["id"].as_str().unwrap()] {
        assert!(!html.contains(secret), "{secret} must not reach the customer");
    }
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["cache-control"], "no-store");
    let unknown = reqwest::get(format!("http://127.0.0.1:{}/pay/{}", pw.api_port, "0".repeat(32)))
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    let browser = Browser::start().await;
    let desktop = browser.open(&page_url, 1280, 900, false).await;
    screenshot(&desktop, "checkout-desktop.png").await;
    drop(desktop);
    let page = browser.open(&page_url, 390, 844, true).await;
    screenshot(&page, "checkout-phone.png").await;
    assert_eq!(page.text("[data-field=amount]").await.as_deref(), Some("0.5"));
    assert_eq!(page.text("[data-field=address]").await.as_deref(), Some(address));
    assert_eq!(page.text("[data-field=tag]").await, None, "no tag on LTC");
    let svg = page.eval("document.querySelector('.qr svg').outerHTML").await;
    assert_eq!(
        decode_qr_svg(svg.as_str().unwrap()).as_deref(),
        intent["payment_uri"].as_str(),
        "the QR code is the payment URI"
    );
    page.wait_for(
        "the copy buttons",
        "!document.querySelector('button[data-copy]').hidden",
    )
    .await;
    page.wait_for(
        "the countdown",
        "/^\\d+:\\d\\d$/.test(document.querySelector('[data-field=countdown]').textContent)",
    )
    .await;
    let loaded_at = page.eval("window.paywatchLoadedAt").await;

    node.send(address, "0.5").await;
    page.wait_for(
        "the page to show the payment",
        "document.querySelector('main').dataset.state === 'confirming'",
    )
    .await;
    assert!(
        page.text("[data-field=state-text]")
            .await
            .unwrap()
            .contains("waiting for confirmations")
    );
    node.mine(1).await;
    page.wait_for(
        "the page to show it paid",
        "document.querySelector('main').dataset.state === 'paid'",
    )
    .await;
    assert_eq!(
        page.text("[data-field=state-text]").await.as_deref(),
        Some("Paid. Thank you!")
    );
    assert_eq!(page.eval("window.paywatchLoadedAt").await, loaded_at, "never reloaded");
    let status: Value = reqwest::get(format!("{page_url}/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (status["state"].as_str(), status["final"].as_bool()),
        (Some("paid"), Some(true))
    );
    assert!(status.get("metadata").is_none() && status.get("external_id").is_none() && status.get("order").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_xrp_page_shows_the_tag_an_underpayment_and_limits_its_clients() {
    let rippled = FakeRippled::start(90_000_000).await;
    let url = rippled.url.clone();
    let pw = Paywatch::start(
        |_| {
            format!(
                "{}{}",
                common::configs::xrp(&url, &[MERCHANT.to_string()]),
                checkout_table("requests_per_minute = 40\nshow_external_id = true\n")
            )
        },
        None,
    )
    .await;
    let intent = pw
        .create(json!({"asset": "XRP", "amount": "12.5", "external_id": "order-9"}))
        .await;
    let tag = intent["tag"].as_u64().unwrap();
    let (page_url, _) = local_page(&pw, &intent);

    let browser = Browser::start().await;
    let page = browser.open(&page_url, 1280, 900, false).await;
    screenshot(&page, "checkout-xrp-desktop.png").await;
    assert_eq!(page.text("[data-field=tag]").await, Some(tag.to_string()));
    assert!(
        page.text("[data-field=tag-warning]")
            .await
            .unwrap()
            .contains("required")
    );
    assert_eq!(page.text("[data-field=address]").await.as_deref(), Some(MERCHANT));
    let svg = page.eval("document.querySelector('.qr svg').outerHTML").await;
    assert_eq!(
        decode_qr_svg(svg.as_str().unwrap()).as_deref(),
        intent["payment_uri"].as_str()
    );
    assert!(
        page.eval("document.body.textContent")
            .await
            .as_str()
            .unwrap()
            .contains("order-9"),
        "shown when configured"
    );

    // Part of the amount: the page says what is left to send.
    rippled.pay(10_000_000, Some(tag));
    rippled.close(1);
    page.wait_for(
        "the underpayment",
        "document.querySelector('main').dataset.state === 'underpaid'",
    )
    .await;
    let said = page.text("[data-field=state-text]").await.unwrap();
    assert!(said.contains("Send the remaining 2.5 XRP"), "{said}");
    drop(page);
    drop(browser);

    // A client polling too fast is told to wait.
    let http = reqwest::Client::new();
    wait_for("the rate limit", Duration::from_secs(20), || {
        let request = http.get(format!("{page_url}/status")).send();
        async move { (request.await.unwrap().status() == 429).then_some(()) }
    })
    .await;
}
