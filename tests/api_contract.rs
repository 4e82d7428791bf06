//! The HTTP API against its contract, `docs/openapi.json`, with the daemon
//! run in-process (`paywatch::run` on a bound listener, stopped by a
//! shutdown future): every route the daemon serves is documented with the
//! methods it answers, and every documented route and method answers.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::rippled::{FakeRippled, MERCHANT};
use serde_json::Value;

const TOKEN: &str = "contract-test-token";

/// The daemon run in-process on a loopback port, with `PAYWATCH_API_TOKEN`
/// set to `TOKEN`.
struct InProcess {
    base: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl InProcess {
    async fn start(config: &str) -> InProcess {
        let config = paywatch::Config::parse(config, |var| (var == "PAYWATCH_API_TOKEN").then(|| TOKEN.to_string()))
            .expect("a valid config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(paywatch::run(config, listener, async {
            let _ = stopped.await;
        }));
        InProcess { base, stop, task }
    }

    /// Stops it through its shutdown future: it returns Ok, its tasks and
    /// the intent writer joined.
    async fn stop(self) {
        self.stop.send(()).unwrap();
        let outcome = tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("the daemon stops on its shutdown future")
            .expect("the daemon task");
        assert!(outcome.is_ok(), "{outcome:?}");
    }
}
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_documented_and_every_documented_route_answers() {
    let rippled = FakeRippled::start(90_000_000).await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "state_dir = {:?}\n[assets.XRP]\nbackend = \"rippled\"\nurl = \"{}\"\naddresses = [\"{MERCHANT}\"]\npoll_interval = \"250ms\"\n",
        dir.path().join("state"),
        rippled.url
    );
    let daemon = InProcess::start(&text).await;
    let base = daemon.base.clone();

    let http = reqwest::Client::new();
    let spec: Value = common::wait_for("the OpenAPI document", Duration::from_secs(20), || async {
        let answer = http
            .get(format!("{base}/v1/openapi.json"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .ok()?;
        answer.json().await.ok()
    })
    .await;
    assert_eq!(spec["openapi"], "3.1.0");
    let documented: BTreeMap<String, BTreeSet<String>> = spec["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .map(|(path, item)| {
            let methods = item
                .as_object()
                .expect("a path item")
                .keys()
                .map(|m| m.to_uppercase())
                .filter(|m| METHODS.contains(&m.as_str()))
                .collect();
            (path.clone(), methods)
        })
        .collect();
    let served: BTreeSet<String> = paywatch::api::routes()
        .into_iter()
        .map(|(path, _, _)| path.to_string())
        .collect();
    assert_eq!(
        served,
        documented.keys().cloned().collect::<BTreeSet<_>>(),
        "the routes served and the paths documented differ"
    );

    // Every method on every served path: answered (not 405, not the
    // "no such endpoint" fallback) exactly when documented.
    for (path, methods) in &documented {
        let concrete = path.replace("{id}", "pi_doesnotexist");
        for method in METHODS {
            let request = http
                .request(method.parse().unwrap(), format!("{base}{concrete}"))
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .body("{}");
            let answer = request.send().await.unwrap();
            let status = answer.status().as_u16();
            let body: Value = answer.json().await.unwrap_or(Value::Null);
            let answered = status != 405 && body["error"]["message"] != "no such endpoint";
            assert_eq!(
                answered,
                methods.contains(method),
                "{method} {path}: HTTP {status} {body}"
            );
        }
    }

    // Each documented operation's scope is the one the daemon requires;
    // every operation behind the token documents one, public ones none.
    for (path, needs_token, _) in paywatch::api::routes() {
        for method in &documented[path] {
            let documented_scope = spec["paths"][path][method.to_lowercase()]["x-paywatch-scope"].as_str();
            let method: reqwest::Method = method.parse().unwrap();
            let required = paywatch::api::required_scope(&method, path).map(|s| s.as_str());
            if needs_token {
                assert!(documented_scope.is_some(), "{method} {path} documents no scope");
                assert_eq!(required, documented_scope, "{method} {path}");
            } else {
                assert_eq!(documented_scope, None, "{method} {path} is public");
            }
        }
    }

    // Routes behind the token refuse a request without it; public ones do not.
    for (path, needs_token, _) in paywatch::api::routes() {
        let concrete = path.replace("{id}", "pi_doesnotexist");
        let method = documented[path].iter().next().expect("a method").clone();
        let status = http
            .request(method.parse().unwrap(), format!("{base}{concrete}"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        assert_eq!(
            status == 401,
            needs_token,
            "{method} {path} without a token: HTTP {status}"
        );
        let secured = spec["paths"][path][method.to_lowercase()]["security"]
            .as_array()
            .map(Vec::len);
        let public = secured == Some(0);
        assert_eq!(public, !needs_token, "{method} {path}: documented security");
    }

    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_tokens_get_what_their_scopes_allow() {
    let rippled = FakeRippled::start(90_000_000).await;
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(
        &tokens,
        "[[token]]\nname = \"dashboard\"\ntoken = \"dashboard-token-0123456789\"\nscopes = [\"read\"]\n\
         [[token]]\nname = \"shop\"\ntoken = \"shop-token-0123456789abcdef\"\nscopes = [\"read\", \"write\"]\n\
         [[token]]\nname = \"operator\"\ntoken = \"operator-token-0123456789ab\"\nscopes = [\"read\", \"manual\"]\n",
    )
    .unwrap();
    let text = format!(
        "state_dir = {:?}\n[api]\ntokens_file = {:?}\n[assets.XRP]\nbackend = \"rippled\"\nurl = \"{}\"\naddresses = [\"{MERCHANT}\"]\npoll_interval = \"250ms\"\n",
        dir.path().join("state"),
        tokens,
        rippled.url
    );
    // The single-token variable is not a way in once named tokens are set.
    let daemon = InProcess::start(&text).await;
    let base = daemon.base.clone();
    let http = reqwest::Client::new();
    let call = |method: &str, path: &str, token: &str, body: Value| {
        let request = http
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .bearer_auth(token)
            .json(&body);
        async move {
            let answer = request.send().await.unwrap();
            let status = answer.status().as_u16();
            (status, answer.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (shop, dashboard, operator) = (
        "shop-token-0123456789abcdef",
        "dashboard-token-0123456789",
        "operator-token-0123456789ab",
    );
    let order = serde_json::json!({"asset": "XRP", "amount": "12.5"});
    let intent = common::wait_for("the shop's create", Duration::from_secs(20), || {
        let create = call("POST", "/v1/intents", shop, order.clone());
        async move {
            let (status, body) = create.await;
            (status == 201).then_some(body)
        }
    })
    .await;
    let id = intent["id"].as_str().unwrap().to_string();

    let (status, body) = call("POST", "/v1/intents", dashboard, order.clone()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("insufficient_scope")),
        "{body}"
    );
    assert!(
        body["error"]["message"].as_str().unwrap().contains("dashboard"),
        "{body}"
    );
    let (status, _) = call("GET", &format!("/v1/intents/{id}"), dashboard, Value::Null).await;
    assert_eq!(status, 200);
    let (status, _) = call("POST", &format!("/v1/intents/{id}/cancel"), operator, Value::Null).await;
    assert_eq!(status, 403, "cancelling is not a manual action");
    let (status, _) = call("POST", &format!("/v1/intents/{id}/cancel"), shop, Value::Null).await;
    assert_eq!(status, 200);
    let (status, body) = call("GET", "/v1/events?after=0", operator, Value::Null).await;
    assert_eq!(status, 200);
    let event = body["events"][0]["id"].as_str().expect("an event").to_string();
    let (status, _) = call("POST", &format!("/v1/events/{event}/redeliver"), shop, Value::Null).await;
    assert_eq!(status, 403, "redelivering is a manual action");
    let (status, body) = call("POST", &format!("/v1/events/{event}/redeliver"), operator, Value::Null).await;
    assert!(status != 401 && status != 403, "{status} {body}");
    // Accounts are created and closed with `write`; assignments and
    // resolutions are manual actions, recorded under the token's name.
    let customer = serde_json::json!({"asset": "XRP", "external_id": "customer-7"});
    let (status, body) = call("POST", "/v1/accounts", dashboard, customer.clone()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("insufficient_scope"))
    );
    let (status, account) = call("POST", "/v1/accounts", shop, customer).await;
    assert_eq!(status, 201, "{account}");
    let account_id = account["id"].as_str().unwrap();
    let (status, _) = call(
        "POST",
        &format!("/v1/accounts/{account_id}/close"),
        operator,
        Value::Null,
    )
    .await;
    assert_eq!(status, 403, "closing an account is not a manual action");
    let (status, _) = call("GET", &format!("/v1/accounts/{account_id}"), dashboard, Value::Null).await;
    assert_eq!(status, 200);
    let (_, open) = call("POST", "/v1/intents", shop, order.clone()).await;
    let open_id = open["id"].as_str().unwrap();
    let resolve = format!("/v1/intents/{open_id}/resolve");
    let decision = serde_json::json!({"status": "expired", "reason": "customer cancelled by phone"});
    let (status, _) = call("POST", &resolve, shop, decision.clone()).await;
    assert_eq!(status, 403, "resolving is a manual action");
    let (status, _) = call("POST", "/v1/transfers/XRP:AB:0/assign", shop, decision.clone()).await;
    assert_eq!(status, 403, "assigning is a manual action");
    let (status, resolved) = call("POST", &resolve, operator, decision).await;
    assert_eq!(status, 200, "{resolved}");
    assert_eq!(resolved["audit"]["actor"], "operator");
    let (status, audit) = call("GET", "/v1/audit", dashboard, Value::Null).await;
    assert_eq!((status, audit["audit"][0]["actor"].as_str()), (200, Some("operator")));
    for refused in [TOKEN, "not-a-token-at-all-000000"] {
        let (status, _) = call("GET", "/v1/status", refused, Value::Null).await;
        assert_eq!(status, 401, "{refused}");
    }

    daemon.stop().await;
}
