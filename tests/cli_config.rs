//! The binary refuses bad configuration with exit code 2 and a message that
//! names the key (docs/config.md); `check-config` validates without starting.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn run(args: &[&str], config: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("paywatch.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_paywatch"))
        .args(args)
        .arg("--config")
        .arg(&path)
        .env("PAYWATCH_API_TOKEN", "x")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout),
    )
}

const GOOD_ADDRESS: &str = "rltc1qrl3keavzu7pe2n7jqxznhax745qttrlqglga2z";

fn ltc(extra: &str) -> String {
    format!("[assets.LTC]\nbackend = \"core-rpc\"\nurl = \"http://127.0.0.1:1\"\nnetwork = \"regtest\"\n{extra}\n")
}

#[test]
fn bad_configs_stop_the_start_with_exit_code_2_naming_the_key() {
    // A valid asset table, after top-level keys under test.
    let good_ltc = ltc(&format!("addresses = [\"{GOOD_ADDRESS}\"]"));
    let cases = [
        (
            ltc(&format!("addresses = [\"{GOOD_ADDRESS}\"]\nbogus_key = 1")),
            "bogus_key",
        ),
        (
            ltc("addresses = [\"rltc1qrl3keavzu7pe2n7jqxznhax745qttrlqglga2y\"]"),
            "assets.LTC.addresses[0]",
        ),
        (
            ltc("addresses = [\"ltc1qkehv22jw3dzxlwdj29wvh70m5nwanc3jyajwwz\"]"),
            "assets.LTC.addresses[0]",
        ),
        (
            ltc(&format!("addresses = [\"{GOOD_ADDRESS}\"]\nnetwork2 = \"x\"")),
            "network2",
        ),
        (
            "[assets.DOGE]\nbackend = \"core-rpc\"\nurl = \"http://x\"\n".to_string(),
            "assets.DOGE",
        ),
        (
            ltc(&format!("addresses = [\"{GOOD_ADDRESS}\"]\nconfirmations = 0")),
            "assets.LTC.confirmations",
        ),
        (format!("[api]\nlisten = \"localhost\"\n{}", ltc("")), "api.listen"),
        (format!("[webhook]\nurl = \"ftp://x\"\n{}", ltc("")), "webhook.url"),
        ("state_dir = 5\n".to_string(), "state_dir"),
        (format!("store = \"postgres://u:secret@db/pw\"\n{good_ltc}"), "store"),
        (format!("store = \"mysql://db/pw\"\n{good_ltc}"), "store"),
        (
            format!("store = \"postgres://u@db/pw\"\n[cluster]\nlease_ttl = \"1s\"\n{good_ltc}"),
            "cluster.lease_ttl",
        ),
        (
            format!("[cluster]\ninstance = \"two words\"\n{good_ltc}"),
            "cluster.instance",
        ),
        (
            format!("store_password_file = \"/x\"\n{good_ltc}"),
            "store_password_file",
        ),
    ];
    for (config, key) in cases {
        for command in ["check-config", "run"] {
            let (code, output) = run(&[command], &config);
            assert_eq!(code, Some(2), "{command} with bad {key}: {output}");
            assert!(output.contains(key), "{command}: message should name {key}: {output}");
        }
    }
}

#[test]
fn mweb_and_wrong_network_addresses_are_explained() {
    let (code, output) = run(
        &["check-config"],
        &ltc("addresses = [\"ltc1qkehv22jw3dzxlwdj29wvh70m5nwanc3jyajwwz\"]"),
    );
    assert_eq!(code, Some(2));
    assert!(output.contains("mainnet") && output.contains("regtest"), "{output}");
    let (code, output) = run(&["check-config"], &ltc("addresses = [\"tmweb1qq0000\"]"));
    assert_eq!(code, Some(2));
    assert!(output.contains("MWEB"), "{output}");
}

#[test]
fn a_valid_config_checks_out() {
    let (code, output) = run(&["check-config"], &ltc(&format!("addresses = [\"{GOOD_ADDRESS}\"]")));
    assert_eq!(code, Some(0), "{output}");
    assert!(
        output.contains("LTC: backend core-rpc, network regtest, match address"),
        "{output}"
    );
}

#[test]
fn a_postgres_store_is_checked_and_shown_without_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("db-password");
    std::fs::write(&secret, "hunter2-secret\n").unwrap();
    let config = format!(
        "store = \"postgres://paywatch@db.internal:5433/paywatch\"\nstore_password_file = \"{}\"\n[cluster]\ninstance = \"pay-1\"\n{}",
        secret.display(),
        ltc(&format!("addresses = [\"{GOOD_ADDRESS}\"]"))
    );
    let (code, output) = run(&["check-config"], &config);
    assert_eq!(code, Some(0), "{output}");
    assert!(
        output.contains("store: postgres://paywatch@db.internal:5433/paywatch (instance pay-1"),
        "{output}"
    );
    assert!(!output.contains("hunter2"), "{output}");
    // Without an API token of its own, instances could not share clients.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("paywatch.toml");
    std::fs::write(&path, &config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_paywatch"))
        .args(["check-config", "--config"])
        .arg(&path)
        .env_remove("PAYWATCH_API_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("api.token_file"));
}

#[test]
fn a_missing_config_file_is_a_config_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_paywatch"))
        .args(["check-config", "--config", "/nonexistent/paywatch.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn an_invalid_tron_address_stops_the_start() {
    let config = "[assets.USDT_TRC20]\nbackend = \"tron-http\"\nurl = \"http://127.0.0.1:1\"\naddresses = [\"TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6u\"]\n";
    for command in ["check-config", "run"] {
        let (code, output) = run(&[command], config);
        assert_eq!(code, Some(2), "{output}");
        assert!(output.contains("assets.USDT_TRC20.addresses[0]"), "{output}");
    }
}
