//! The hosted checkout page in a real headless Chromium: amount, address
//! and the QR code (decoded from a screenshot) read off the page, a payment
//! on litecoind seen moving the page to detected and to confirmed without a
//! reload, no Content-Security-Policy violation; the page without
//! JavaScript; an XRP page with its tag and an underpayment's remainder; and
//! over plain HTTP what a prying client gets. With `PAYWATCH_SCREENSHOTS=DIR`
//! the screenshots of docs/images are written there.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::chromium::{Browser, Page, decode_qr_png};
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
fn local_page(pw: &Paywatch, intent: &Value) -> String {
    let url = intent["checkout_url"].as_str().expect("a checkout_url");
    assert!(url.starts_with(&format!("{BASE}/")), "{url}");
    let token = url.rsplit('/').next().unwrap().to_string();
    assert_eq!(token.len(), 32);
    assert!(!url.contains(intent["id"].as_str().unwrap()), "never the intent id");
    format!("http://127.0.0.1:{}/pay/{token}", pw.api_port)
}

async fn screenshot(page: &Page<'_>, name: &str) {
    if let Some(dir) = std::env::var_os("PAYWATCH_SCREENSHOTS") {
        page.screenshot(&std::path::Path::new(&dir).join(name)).await;
    }
}

/// The page's stylesheet applied, and nothing blocked by its own policy.
async fn styled_and_clean(page: &Page<'_>) {
    assert_eq!(page.eval("window.cspViolations").await, json!([]), "CSP violations");
    assert_ne!(
        page.eval("getComputedStyle(document.querySelector('.state')).borderTopLeftRadius")
            .await,
        json!("0px"),
        "the stylesheet is applied"
    );
}

async fn state_is(page: &Page<'_>, state: &str) {
    page.wait_for(
        &format!("the page to show {state}"),
        &format!("document.querySelector('main').dataset.state === '{state}'"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_pays_from_the_page_and_watches_it_confirm_without_reloading() {
    let node = Litecoind::start().await;
    let url = node.url();
    let (_pool, pw) = start_ltc(&node, &url, 3, 1, &checkout_table(""), None).await;
    let intent = pw
        .create(json!({"asset": "LTC", "amount": "0.5", "external_id": "order-77", "metadata": {"customer_email": "c@example.com"}}))
        .await;
    let page_url = local_page(&pw, &intent);
    let address = intent["address"].as_str().unwrap();

    // Over plain HTTP: everything needed is in the HTML, nothing more.
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
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["cache-control"], "no-store");
    let unknown = reqwest::get(format!("http://127.0.0.1:{}/pay/{}", pw.api_port, "0".repeat(32)))
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    let browser = Browser::start().await;
    // Without JavaScript: readable, the expiry as a time, no copy buttons.
    let plain = browser.open_with(&page_url, 390, 844, true, false).await;
    assert_eq!(plain.text("[data-field=amount]").await.as_deref(), Some("0.5"));
    let expiry = plain.text("[data-field=expiry]").await.unwrap();
    assert!(
        expiry.starts_with("Expires at ") && expiry.ends_with(" UTC"),
        "{expiry}"
    );
    assert_eq!(
        plain.eval("document.querySelector('button[data-copy]').hidden").await,
        json!(true)
    );
    drop(plain);

    let desktop = browser.open(&page_url, 1280, 900, false).await;
    screenshot(&desktop, "checkout-desktop.png").await;
    styled_and_clean(&desktop).await;
    drop(desktop);
    let page = browser.open(&page_url, 390, 844, true).await;
    screenshot(&page, "checkout-phone.png").await;
    styled_and_clean(&page).await;
    assert_eq!(page.text("[data-field=amount]").await.as_deref(), Some("0.5"));
    assert_eq!(page.text("[data-field=address]").await.as_deref(), Some(address));
    assert_eq!(page.text("[data-field=tag]").await, None, "no tag on LTC");
    assert_eq!(
        decode_qr_png(&page.element_png(".qr svg").await).as_deref(),
        intent["payment_uri"].as_str(),
        "the QR code as drawn scans to the payment URI"
    );
    page.wait_for(
        "the copy buttons",
        "!document.querySelector('button[data-copy]').hidden",
    )
    .await;
    page.wait_for(
        "the countdown",
        "/^Expires in (\\d+:)?\\d+:\\d\\d$/.test(document.querySelector('[data-field=expiry]').textContent)",
    )
    .await;
    let loaded_at = page.eval("window.paywatchLoadedAt").await;
    // A poll or two while waiting: the page stays as it is.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        page.eval("window.paywatchLoadedAt").await,
        loaded_at,
        "no reload while waiting"
    );
    let status: Value = reqwest::get(format!("{page_url}/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        status["pay"]["amount"].as_str(),
        page.eval("document.querySelector('main').dataset.payAmount")
            .await
            .as_str(),
        "the status and the page say the amount alike"
    );

    node.send(address, "0.5").await;
    state_is(&page, "confirming").await;
    assert!(
        page.text("[data-field=state-text]")
            .await
            .unwrap()
            .contains("waiting for confirmations")
    );
    assert_eq!(
        page.eval("document.querySelector('[data-field=address]').closest('dd').hidden")
            .await,
        json!(true),
        "nothing to send any more: the address and QR code go away"
    );
    node.mine(1).await;
    state_is(&page, "paid").await;
    assert_eq!(
        page.text("[data-field=state-text]").await.as_deref(),
        Some("Paid. Thank you!")
    );
    assert_eq!(page.eval("window.paywatchLoadedAt").await, loaded_at, "never reloaded");
    styled_and_clean(&page).await;
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
    assert!(status["pay"].is_null());
    assert!(status.get("metadata").is_none() && status.get("order").is_none());

    // A cancelled order's page shows nothing to pay.
    let other = pw.ltc_intent("0.2").await;
    let (code, _) = pw
        .post(
            &format!("/v1/intents/{}/cancel", other["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(code, 200);
    let html = reqwest::get(local_page(&pw, &other))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("was cancelled") && !html.contains("data-field=\"address\"") && !html.contains("<svg"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_xrp_page_shows_the_tag_an_underpayment_and_limits_each_client() {
    let rippled = FakeRippled::start(90_000_000).await;
    let url = rippled.url.clone();
    let pw = Paywatch::start(
        |_| {
            format!(
                "{}{}",
                common::configs::xrp(&url, &[MERCHANT.to_string()]),
                checkout_table("requests_per_minute = 40\nshow_external_id = true\ntrust_forwarded_for = true\n")
            )
        },
        None,
    )
    .await;
    let intent = pw
        .create(json!({"asset": "XRP", "amount": "12.5", "external_id": "order-9"}))
        .await;
    let tag = intent["tag"].as_u64().unwrap();
    let page_url = local_page(&pw, &intent);

    let browser = Browser::start().await;
    let page = browser.open(&page_url, 1280, 900, false).await;
    screenshot(&page, "checkout-xrp-desktop.png").await;
    styled_and_clean(&page).await;
    assert_eq!(page.text("[data-field=tag]").await, Some(tag.to_string()));
    assert!(
        page.text("[data-field=tag-warning]")
            .await
            .unwrap()
            .contains("required")
    );
    assert_eq!(page.text("[data-field=address]").await.as_deref(), Some(MERCHANT));
    assert_eq!(
        decode_qr_png(&page.element_png(".qr svg").await).as_deref(),
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

    // Part of the amount: the page asks for the rest, with a QR code for it.
    rippled.pay(10_000_000, Some(tag));
    rippled.close(1);
    state_is(&page, "underpaid").await;
    page.wait_for(
        "the remainder",
        "document.querySelector('[data-field=amount]').textContent === '2.5'",
    )
    .await;
    let said = page.text("[data-field=state-text]").await.unwrap();
    assert!(said.contains("Send the remaining 2.5 XRP"), "{said}");
    let rest = decode_qr_png(&page.element_png(".qr svg").await).unwrap();
    assert_eq!(rest, format!("xrpl:{MERCHANT}?dt={tag}&amount=2.5"));
    drop(page);
    drop(browser);

    // One client polling too fast is told to wait; another is not.
    let http = reqwest::Client::new();
    let from = |client: &'static str| {
        http.get(format!("{page_url}/status"))
            .header("x-forwarded-for", client)
            .send()
    };
    wait_for("the rate limit", Duration::from_secs(20), || {
        let request = from("203.0.113.7");
        async move { (request.await.unwrap().status() == 429).then_some(()) }
    })
    .await;
    assert_eq!(from("203.0.113.7").await.unwrap().status(), 429);
    assert_eq!(from("198.51.100.2").await.unwrap().status(), 200, "per client");
}
