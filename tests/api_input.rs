//! Every malformed request of docs/api.md gets its 4xx and error code; no input,
//! however broken, yields a 5xx or stops the daemon.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::litecoind::Litecoind;
use common::paywatch::{TOKEN, start_ltc};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_their_4xx_and_code() {
    let node = Litecoind::start().await;
    let (addresses, pw) = start_ltc(&node, &node.url(), 2, 1, "", None).await;
    let mainnet_ltc = "ltc1qkehv22jw3dzxlwdj29wvh70m5nwanc3jyajwwz";
    let long_id = "x".repeat(129);
    let big_metadata = json!({"blob": "y".repeat(5000)}).to_string();
    let huge_body = format!(
        "{{\"asset\":\"LTC\",\"amount\":\"1\",\"metadata\":{{\"x\":\"{}\"}}}}",
        "z".repeat(70_000)
    );
    // (method, path, body, token, expected status, expected code)
    type Case<'a> = (&'a str, String, Option<String>, Option<&'a str>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/v1/intents".into(),
            Some(r#"{"asset":"LTC","amount":"1"}"#.into()),
            None,
            401,
            "unauthorized",
        ),
        (
            "POST",
            "/v1/intents".into(),
            Some(r#"{"asset":"LTC","amount":"1"}"#.into()),
            Some("wrong"),
            401,
            "unauthorized",
        ),
        ("GET", "/v1/status".into(), None, None, 401, "unauthorized"),
        ("GET", "/v1/events".into(), None, Some(""), 401, "unauthorized"),
        (
            "POST",
            "/v1/intents".into(),
            Some("not json".into()),
            Some(TOKEN),
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/v1/intents".into(),
            Some("".into()),
            Some(TOKEN),
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/v1/intents".into(),
            Some("[1,2]".into()),
            Some(TOKEN),
            400,
            "invalid_request",
        ),
        (
            "POST",
            "/v1/intents".into(),
            Some("{}".into()),
            Some(TOKEN),
            400,
            "missing_field",
        ),
        (
            "POST",
            "/v1/intents".into(),
            Some(r#"{"asset":"LTC"}"#.into()),
            Some(TOKEN),
            400,
            "missing_field",
        ),
        (
            "POST",
            "/v1/intents".into(),
            Some(r#"{"asset":5,"amount":"1"}"#.into()),
            Some(TOKEN),
            400,
            "invalid_asset",
        ),
        (
            "POST",
            "/v1/intents".into(),
            Some(r#"{"asset":"DOGE","amount":"1"}"#.into()),
            Some(TOKEN),
            400,
            "invalid_asset",
        ),
        (
            "POST",
            "/v1/intents".into(),
            Some(r#"{"asset":"BTC","amount":"1"}"#.into()),
            Some(TOKEN),
            422,
            "asset_not_configured",
        ),
        (
            "POST",
            "/v1/intents".into(),
            Some(r#"{"asset":"LTC","amount":1}"#.into()),
            Some(TOKEN),
            400,
            "invalid_amount",
        ),
        (
            "POST",
            "/v1/intents".into(),
            Some(r#"{"asset":"LTC","amount":0.1}"#.into()),
            Some(TOKEN),
            400,
            "invalid_amount",
        ),
        (
            "POST",
            "/v1/intents".into(),
            Some(r#"{"asset":"LTC","amount":"1e5"}"#.into()),
            Some(TOKEN),
            400,
            "invalid_amount",
        ),
        (
            "POST",
            "/v1/intents".into(),
            Some(r#"{"asset":"LTC","amount":"-1"}"#.into()),
            Some(TOKEN),
            400,
            "invalid_amount",
        ),
        (
            "POST",
            "/v1/intents".into(),
            Some(r#"{"asset":"LTC","amount":"0"}"#.into()),
            Some(TOKEN),
            400,
            "invalid_amount",
        ),
        (
            "POST",
            "/v1/intents".into(),
            Some(r#"{"asset":"LTC","amount":"0.000000001"}"#.into()),
            Some(TOKEN),
            400,
            "invalid_amount",
        ),
        (
            "POST",
            "/v1/intents".into(),
            Some(r#"{"asset":"LTC","amount":""}"#.into()),
            Some(TOKEN),
            400,
            "invalid_amount",
        ),
        (
            "POST",
            "/v1/intents".into(),
            Some(r#"{"asset":"LTC","amount":null}"#.into()),
            Some(TOKEN),
            400,
            "invalid_amount",
        ),
        (
            "POST",
            "/v1/intents".into(),
            Some(r#"{"asset":"LTC","amount":"99999999999999999999999999999"}"#.into()),
            Some(TOKEN),
            400,
            "invalid_amount",
        ),
        (
            "POST",
            "/v1/intents".into(),
            Some(r#"{"asset":"LTC","amount":"1","external_id":""}"#.into()),
            Some(TOKEN),
            400,
            "invalid_external_id",
        ),
        (
            "POST",
            "/v1/intents".into(),
            Some(format!(r#"{{"asset":"LTC","amount":"1","external_id":"{long_id}"}}"#)),
            Some(TOKEN),
            400,
            "invalid_external_id",
        ),
        (
            "POST",
            "/v1/intents".into(),
            Some(r#"{"asset":"LTC","amount":"1","external_id":7}"#.into()),
            Some(TOKEN),
            400,
            "invalid_external_id",
        ),
        (
            "POST",
            "/v1/intents".into(),
            Some(r#"{"asset":"LTC","amount":"1","metadata":"x"}"#.into()),
            Some(TOKEN),
            400,
            "invalid_metadata",
        ),
        (
            "POST",
            "/v1/intents".into(),
            Some(r#"{"asset":"LTC","amount":"1","metadata":[1]}"#.into()),
            Some(TOKEN),
            400,
            "invalid_metadata",
        ),
        (
            "POST",
            "/v1/intents".into(),
            Some(format!(r#"{{"asset":"LTC","amount":"1","metadata":{big_metadata}}}"#)),
            Some(TOKEN),
            400,
            "invalid_metadata",
        ),
        (
            "POST",
            "/v1/intents".into(),
            Some(r#"{"asset":"LTC","amount":"1","expires_in":0}"#.into()),
            Some(TOKEN),
            400,
            "invalid_expires_in",
        ),
        (
            "POST",
            "/v1/intents".into(),
            Some(r#"{"asset":"LTC","amount":"1","expires_in":-5}"#.into()),
            Some(TOKEN),
            400,
            "invalid_expires_in",
        ),
        (
            "POST",
            "/v1/intents".into(),
            Some(r#"{"asset":"LTC","amount":"1","expires_in":"60"}"#.into()),
            Some(TOKEN),
            400,
            "invalid_expires_in",
        ),
        (
            "POST",
            "/v1/intents".into(),
            Some(r#"{"asset":"LTC","amount":"1","expires_in":1.5}"#.into()),
            Some(TOKEN),
            400,
            "invalid_expires_in",
        ),
        (
            "POST",
            "/v1/intents".into(),
            Some(r#"{"asset":"LTC","amount":"1","expires_in":99999999999}"#.into()),
            Some(TOKEN),
            400,
            "invalid_expires_in",
        ),
        (
            "POST",
            "/v1/intents".into(),
            Some(r#"{"asset":"LTC","amount":"1","confirmations":0}"#.into()),
            Some(TOKEN),
            400,
            "invalid_confirmations",
        ),
        (
            "POST",
            "/v1/intents".into(),
            Some(r#"{"asset":"LTC","amount":"1","confirmations":"2"}"#.into()),
            Some(TOKEN),
            400,
            "invalid_confirmations",
        ),
        (
            "POST",
            "/v1/intents".into(),
            Some(r#"{"asset":"LTC","amount":"1","address":"garbage"}"#.into()),
            Some(TOKEN),
            400,
            "invalid_address",
        ),
        (
            "POST",
            "/v1/intents".into(),
            Some(format!(r#"{{"asset":"LTC","amount":"1","address":"{mainnet_ltc}"}}"#)),
            Some(TOKEN),
            400,
            "invalid_address",
        ),
        (
            "POST",
            "/v1/intents".into(),
            Some(r#"{"asset":"LTC","amount":"1","address":7}"#.into()),
            Some(TOKEN),
            400,
            "invalid_address",
        ),
        (
            "POST",
            "/v1/intents".into(),
            Some(r#"{"asset":"LTC","amount":"1","tag":-1}"#.into()),
            Some(TOKEN),
            400,
            "invalid_tag",
        ),
        (
            "POST",
            "/v1/intents".into(),
            Some(r#"{"asset":"LTC","amount":"1","tag":4294967296}"#.into()),
            Some(TOKEN),
            400,
            "invalid_tag",
        ),
        (
            "POST",
            "/v1/intents".into(),
            Some(r#"{"asset":"LTC","amount":"1","tag":5}"#.into()),
            Some(TOKEN),
            422,
            "not_allowed",
        ),
        (
            "POST",
            "/v1/intents".into(),
            Some(r#"{"asset":"LTC","amount":"1","colour":"red"}"#.into()),
            Some(TOKEN),
            400,
            "unknown_field",
        ),
        (
            "POST",
            "/v1/intents".into(),
            Some(huge_body),
            Some(TOKEN),
            413,
            "payload_too_large",
        ),
        (
            "GET",
            "/v1/intents/pi_doesnotexist".into(),
            None,
            Some(TOKEN),
            404,
            "not_found",
        ),
        (
            "GET",
            "/v1/intents/nothing-like-an-id".into(),
            None,
            Some(TOKEN),
            404,
            "not_found",
        ),
        (
            "POST",
            "/v1/intents/pi_doesnotexist/cancel".into(),
            None,
            Some(TOKEN),
            404,
            "not_found",
        ),
        (
            "GET",
            "/v1/intents?limit=0".into(),
            None,
            Some(TOKEN),
            400,
            "invalid_parameter",
        ),
        (
            "GET",
            "/v1/intents?limit=abc".into(),
            None,
            Some(TOKEN),
            400,
            "invalid_parameter",
        ),
        (
            "GET",
            "/v1/intents?limit=100000".into(),
            None,
            Some(TOKEN),
            400,
            "invalid_parameter",
        ),
        (
            "GET",
            "/v1/intents?status=paid".into(),
            None,
            Some(TOKEN),
            400,
            "invalid_parameter",
        ),
        (
            "GET",
            "/v1/intents?asset=DOGE".into(),
            None,
            Some(TOKEN),
            400,
            "invalid_asset",
        ),
        (
            "GET",
            "/v1/intents?asset=XRP".into(),
            None,
            Some(TOKEN),
            422,
            "asset_not_configured",
        ),
        (
            "GET",
            "/v1/intents?sort=asc".into(),
            None,
            Some(TOKEN),
            400,
            "invalid_parameter",
        ),
        (
            "GET",
            "/v1/events?after=-1".into(),
            None,
            Some(TOKEN),
            400,
            "invalid_parameter",
        ),
        (
            "GET",
            "/v1/events?wait=999".into(),
            None,
            Some(TOKEN),
            400,
            "invalid_parameter",
        ),
        (
            "GET",
            "/v1/events?limit=0".into(),
            None,
            Some(TOKEN),
            400,
            "invalid_parameter",
        ),
        (
            "GET",
            "/v1/transfers?unmatched=maybe".into(),
            None,
            Some(TOKEN),
            400,
            "invalid_parameter",
        ),
        (
            "GET",
            "/v1/transfers?after=x".into(),
            None,
            Some(TOKEN),
            400,
            "invalid_parameter",
        ),
        (
            "DELETE",
            "/v1/intents".into(),
            None,
            Some(TOKEN),
            405,
            "method_not_allowed",
        ),
        ("GET", "/v1/nothing".into(), None, Some(TOKEN), 404, "not_found"),
        ("GET", "/nothing".into(), None, None, 404, "not_found"),
    ];
    for (method, path, body, token, want_status, want_code) in cases {
        let (status, reply) = pw.request(method, &path, body.as_deref(), token).await;
        let shown = body.as_deref().map(|b| &b[..b.len().min(80)]).unwrap_or("");
        assert_eq!(status, want_status, "{method} {path} {shown}: {reply}");
        assert_eq!(reply["error"]["code"], want_code, "{method} {path} {shown}: {reply}");
        assert!(
            reply["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{method} {path}: message"
        );
    }

    // Conflicts: an address given twice.
    let address = addresses[0].clone();
    let (status, _) = pw
        .post(
            "/v1/intents",
            json!({"asset": "LTC", "amount": "1", "address": address}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, reply) = pw
        .post(
            "/v1/intents",
            json!({"asset": "LTC", "amount": "1", "address": address}),
        )
        .await;
    assert_eq!((status, reply["error"]["code"].as_str()), (409, Some("address_in_use")));

    // Garbage of every shape: never a 5xx, never a crash.
    let mut seed: u64 = 0x5eed;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let fragments = [
        "{",
        "}",
        "[",
        "]",
        "\"asset\"",
        "\"LTC\"",
        "\"amount\"",
        "\"1.5\"",
        ":",
        ",",
        "null",
        "true",
        "1e999",
        "-0",
        "\"\\u0000\"",
        "\"metadata\"",
        "{\"a\":",
        "\"tag\"",
        "4294967295",
        "\"address\"",
        "\"\u{1F600}\"",
        "\"expires_in\"",
        "9".repeat(40).leak(),
    ];
    for _ in 0..400 {
        let n = (next() % 12) as usize;
        let body: String = (0..n)
            .map(|_| fragments[(next() % fragments.len() as u64) as usize])
            .collect();
        let (status, reply) = pw.request("POST", "/v1/intents", Some(&body), Some(TOKEN)).await;
        assert!(status < 500, "POST {body:?} gave {status}: {reply}");
        let raw: Vec<u8> = (0..(next() % 64)).map(|_| (next() % 256) as u8).collect();
        let text = String::from_utf8_lossy(&raw).to_string();
        let (status, _) = pw.request("POST", "/v1/intents", Some(&text), Some(TOKEN)).await;
        assert!(status < 500, "POST raw bytes gave {status}");
        let query: String = (0..(next() % 20))
            .map(|_| ["a", "=", "&", "%", "%zz", "limit", "after", "9", "-", "wait", "status"][(next() % 11) as usize])
            .collect();
        for path in ["/v1/intents", "/v1/events", "/v1/transfers"] {
            let (status, reply) = pw.request("GET", &format!("{path}?{query}"), None, Some(TOKEN)).await;
            assert!(status < 500, "GET {path}?{query} gave {status}: {reply}");
        }
    }
    let (status, _) = pw.request("GET", "/healthz", None, None).await;
    assert_eq!(status, 200, "still alive");
    assert!(!pw.logs().contains("panicked"), "no panic in the logs");
}
