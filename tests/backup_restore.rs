//! `paywatch backup` while the daemon runs and `paywatch restore` from it,
//! against a real Litecoin Core regtest node: the restored daemon rescans
//! from the backup's height, so a payment made after the backup to an
//! intent the backup never saw is found again (as unmatched, its address
//! watched), the feed's seq continues above what the shop saw, and no
//! address handed out since is handed out again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::litecoind::{Litecoind, TPUB};
use common::paywatch::{Paywatch, TOKEN, start_ltc};
use common::wait_for;
use serde_json::json;

fn paywatch(args: &[&str], config: &Path) -> (Output, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_paywatch"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("PAYWATCH_API_TOKEN")
        .output()
        .unwrap();
    let text = common::paywatch::said(&out);
    (out, text)
}

fn leftovers(state_dir: &Path) -> Vec<String> {
    std::fs::read_dir(state_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial") || n.ends_with(".restoring"))
        .collect()
}

async fn newest_seq(pw: &Paywatch) -> u64 {
    pw.events().await.last().map_or(0, |e| e["seq"].as_u64().unwrap())
}

async fn unmatched_txids(pw: &Paywatch) -> Vec<String> {
    pw.get("/v1/transfers?unmatched=true").await["transfers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["txid"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_running_restores_and_the_rescan_finds_what_came_after() {
    let node = Litecoind::start().await;
    let extra = format!("xpub = \"wpkh({TPUB}/0/*)\"");
    let (_pool, mut pw) = start_ltc(&node, &node.url(), 0, 1, &extra, None).await;
    let state_dir = pw.dir.path().join("state");
    let config = pw.config_path();

    // Before the backup: A paid and confirmed.
    let a = pw.ltc_intent("0.11").await;
    let a_id = a["id"].as_str().unwrap().to_string();
    node.send(a["address"].as_str().unwrap(), "0.11").await;
    node.mine(1).await;
    pw.wait_status(&a_id, "confirmed").await;

    // P: open when the backup is taken, paid after it.
    let p = pw.ltc_intent("0.12").await;
    let p_id = p["id"].as_str().unwrap().to_string();

    // The backup, taken while intents are being created on the API.
    let creating = {
        let (url, http) = (format!("http://127.0.0.1:{}", pw.api_port), reqwest::Client::new());
        tokio::spawn(async move {
            let mut made = Vec::new();
            for _ in 0..40 {
                let answer = http
                    .post(format!("{url}/v1/intents"))
                    .bearer_auth(TOKEN)
                    .json(&json!({"asset": "LTC", "amount": "0.5", "expires_in": 3600}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(answer.status(), 201);
                let created: serde_json::Value = answer.json().await.unwrap();
                made.push(created["id"].as_str().unwrap().to_string());
            }
            made
        })
    };
    let backup = pw.dir.path().join("paywatch-backup.redb");
    let (out, text) = paywatch(&["backup", "--to", backup.to_str().unwrap()], &config);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("backup written to") && text.contains("sha256"), "{text}");
    let created_around_backup = creating.await.unwrap();
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&backup).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "a backup holds every record: its owner's only");
    assert_eq!(leftovers(&state_dir), Vec::<String>::new());

    // A client that hangs up after the headers: nothing is left behind, and
    // the next backup is not refused as running.
    let resp = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/v1/backup", pw.api_port))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-paywatch-backup-sha256"));
    drop(resp);
    assert_eq!(leftovers(&state_dir), Vec::<String>::new());
    wait_for("a backup after the hang-up", Duration::from_secs(10), || async {
        let (status, _) = pw.request("POST", "/v1/backup", None, Some(TOKEN)).await;
        (status == 200).then_some(())
    })
    .await;
    let (status, _) = pw.request("POST", "/v1/backup", None, Some("wrong-token")).await;
    assert_eq!(status, 401);

    // After the backup: P paid and confirmed; B paid and confirmed, C
    // handed out and cancelled; the shop sees their events.
    let p_txid = node.send(p["address"].as_str().unwrap(), "0.12").await;
    let b = pw.ltc_intent("0.22").await;
    let b_address = b["address"].as_str().unwrap().to_string();
    let b_txid = node.send(&b_address, "0.22").await;
    node.mine(1).await;
    pw.wait_status(b["id"].as_str().unwrap(), "confirmed").await;
    pw.wait_status(&p_id, "confirmed").await;
    let c = pw.ltc_intent("0.33").await;
    let c_address = c["address"].as_str().unwrap().to_string();
    pw.cancel(c["id"].as_str().unwrap()).await;
    let seen_by_shop = newest_seq(&pw).await;

    // Refused while the daemon holds the store.
    let (out, text) = paywatch(&["restore", "--from", backup.to_str().unwrap()], &config);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("stop paywatch first"), "{text}");

    // Garbage is refused, and the store is left as it was.
    pw.kill9();
    let garbage = pw.dir.path().join("garbage.redb");
    std::fs::write(&garbage, b"not a store at all, just bytes").unwrap();
    let (out, text) = paywatch(&["restore", "--from", garbage.to_str().unwrap()], &config);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("as a paywatch store"), "{text}");
    assert_eq!(leftovers(&state_dir), Vec::<String>::new());

    // The restore: the replaced store kept aside, the seq continued above
    // what the shop saw, the addresses B and C had watched.
    let (out, text) = paywatch(&["restore", "--from", backup.to_str().unwrap()], &config);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("events continue at seq {}", seen_by_shop + 1)),
        "{text}"
    );
    assert!(text.contains("LTC: rescans from height"), "{text}");
    assert!(
        text.contains(&format!("intent.cancelled {}", c["id"].as_str().unwrap())),
        "the cancel after the snapshot is listed as undone: {text}"
    );
    let watched_line = text
        .lines()
        .find(|l| l.contains("address(es) derived after the snapshot are watched"))
        .unwrap_or_else(|| panic!("{text}"))
        .to_string();
    let kept: Vec<_> = std::fs::read_dir(&state_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("paywatch.redb.replaced-"))
        .collect();
    assert_eq!(kept.len(), 1, "the replaced store is kept");
    std::fs::remove_file(&garbage).unwrap();

    pw.resume().await;
    // What the backup held is there; B is not; B's payment, found again by
    // the rescan, is recorded as unmatched (its address watched).
    assert_eq!(pw.intent(&a_id).await["status"], "confirmed");
    // P, open in the snapshot, is paid and confirmed again by the rescan,
    // with its events above what the shop saw.
    let again = pw.wait_status(&p_id, "confirmed").await;
    assert_eq!(again["payments"][0]["txid"], p_txid.as_str(), "{again}");
    let confirmed_again = pw.wait_event("intent.confirmed", Some(&p_id)).await;
    assert!(
        confirmed_again["seq"].as_u64().unwrap() > seen_by_shop,
        "{confirmed_again}"
    );
    // The snapshot is one moment: the intents created around it that it
    // holds, and the addresses it counts as handed out, agree. Those it
    // lacks, with B and C, are exactly the addresses now watched.
    let mut lacking = 2;
    for id in &created_around_backup {
        let (status, _) = pw.request("GET", &format!("/v1/intents/{id}"), None, Some(TOKEN)).await;
        assert!(status == 200 || status == 404, "{status}");
        lacking += usize::from(status == 404);
    }
    assert!(
        watched_line.contains(&format!("LTC: {lacking} address(es)")),
        "{watched_line}, {lacking} lacking"
    );
    let (status, _) = pw
        .request(
            "GET",
            &format!("/v1/intents/{}", b["id"].as_str().unwrap()),
            None,
            Some(TOKEN),
        )
        .await;
    assert_eq!(status, 404, "B was created after the backup");
    wait_for("B's payment found again", Duration::from_secs(30), || async {
        unmatched_txids(&pw).await.contains(&b_txid).then_some(())
    })
    .await;
    let events = pw.events().await;
    let after_restore: Vec<_> = events
        .iter()
        .filter(|e| e["transfer"]["txid"] == b_txid.as_str())
        .collect();
    assert!(!after_restore.is_empty(), "B's payment has an event");
    for e in &after_restore {
        assert!(e["seq"].as_u64().unwrap() > seen_by_shop, "{e}");
    }
    // A new intent gets neither B's nor C's address, and its payment counts.
    let d = pw.ltc_intent("0.44").await;
    let d_address = d["address"].as_str().unwrap();
    assert!(d_address != b_address && d_address != c_address, "{d}");
    node.send(d_address, "0.44").await;
    node.mine(1).await;
    pw.wait_status(d["id"].as_str().unwrap(), "confirmed").await;

    // With the daemon stopped, a backup comes from the store itself; into
    // a state directory that lost its store, a restore needs the shop's
    // seq, and then continues from it.
    pw.terminate();
    let offline = pw.dir.path().join("offline.redb");
    let (out, text) = paywatch(&["backup", "--to", offline.to_str().unwrap()], &config);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("taking the backup from the store directly"), "{text}");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&offline).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    // The disk is lost; the daemon is started on a new, empty store before
    // anyone restores: that store's low seq must not be taken for what the
    // shop saw.
    for entry in std::fs::read_dir(&state_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with("paywatch.redb") {
            std::fs::remove_file(path).unwrap();
        }
    }
    pw.resume().await;
    let fresh = pw.ltc_intent("0.01").await;
    pw.cancel(fresh["id"].as_str().unwrap()).await;
    pw.terminate();
    let (out, text) = paywatch(&["restore", "--from", offline.to_str().unwrap()], &config);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("not a later state of this backup") && text.contains("--seq-floor"),
        "{text}"
    );
    let (out, text) = paywatch(
        &["restore", "--from", offline.to_str().unwrap(), "--seq-floor", "5000"],
        &config,
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("events continue at seq 5000"), "{text}");
    assert!(
        text.contains("LTC: 100 address(es) derived after the snapshot are watched"),
        "{text}"
    );
    pw.resume().await;
    assert_eq!(pw.intent(d["id"].as_str().unwrap()).await["status"], "confirmed");
    let e = pw.ltc_intent("0.55").await;
    pw.cancel(e["id"].as_str().unwrap()).await;
    let cancelled = pw.wait_event("intent.cancelled", e["id"].as_str()).await;
    assert_eq!(cancelled["seq"].as_u64(), Some(5000));
    pw.terminate();

    // That store was restored on estimates: a later restore onto it (from
    // the first backup) trusts its seq, but still watches the guessed
    // addresses on top of what it reached.
    let (out, text) = paywatch(&["restore", "--from", backup.to_str().unwrap()], &config);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("events continue at seq 5001"), "{text}");
    let watched: u64 = text
        .lines()
        .filter(|l| l.contains("address(es) derived"))
        .find_map(|l| l.trim().strip_prefix("LTC: "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!(watched >= 100, "{text}");

    // A store that `store copy` copied elsewhere may be a stale twin of the
    // copy: a restore does not take it for the latest state.
    let elsewhere = pw.dir.path().join("elsewhere");
    let out = Command::new(env!("CARGO_BIN_EXE_paywatch"))
        .args(["store", "copy", "--from", state_dir.to_str().unwrap(), "--to"])
        .arg(&elsewhere)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (out, text) = paywatch(&["restore", "--from", backup.to_str().unwrap()], &config);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("copied elsewhere by `store copy`") && text.contains("--seq-floor"),
        "{text}"
    );
    // Restored, a store is the one that goes on again: a later restore onto
    // it takes it for the latest state.
    let (out, text) = paywatch(
        &["restore", "--from", backup.to_str().unwrap(), "--seq-floor", "6000"],
        &config,
    );
    assert!(out.status.success(), "{text}");
    let (out, text) = paywatch(&["restore", "--from", backup.to_str().unwrap()], &config);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("events continue at seq 6000"), "{text}");
}
