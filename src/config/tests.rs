//! Unit tests of the configuration parser.

use std::path::PathBuf;
use std::time::Duration;

use paywatch_chains::Network;
use paywatch_chains::rpc::RpcAuth;
use paywatch_state::{Asset, MatchMode};

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, |_| None)
}

fn valid_ltc_mainnet() -> &'static str {
    "ltc1qkehv22jw3dzxlwdj29wvh70m5nwanc3jyajwwz"
}

#[test]
fn a_minimal_config_gets_the_documented_defaults() {
    let c = parse(&format!(
        "[assets.LTC]\nbackend = \"core-rpc\"\nurl = \"http://127.0.0.1:9332\"\naddresses = [\"{}\"]\n",
        valid_ltc_mainnet()
    ))
    .expect("valid");
    assert_eq!(c.api.listen.to_string(), defaults::LISTEN);
    assert_eq!(c.state_dir, PathBuf::from(defaults::STATE_DIR));
    let ltc = &c.assets[0];
    assert_eq!(
        (ltc.asset, ltc.network, ltc.policy.match_mode, ltc.policy.confirmations),
        (Asset::Ltc, Network::Mainnet, MatchMode::Address, 6)
    );
    assert_eq!(ltc.policy.late_window, chrono::Duration::hours(24));
    assert!(ltc.policy.mempool);
}

#[test]
fn errors_name_the_key() {
    let cases = [
        (
            "[assets.LTC]\nbackend = \"core-rpc\"\nurl = \"http://x\"\nbogus = 1\n",
            "bogus",
        ),
        (
            "[api]\nlisten = \"nope\"\n[assets.LTC]\nbackend = \"core-rpc\"\nurl = \"http://x\"\n",
            "api.listen",
        ),
        (
            "[assets.DOGE]\nbackend = \"core-rpc\"\nurl = \"http://x\"\n",
            "assets.DOGE",
        ),
        (
            "[assets.LTC]\nbackend = \"esplora2\"\nurl = \"http://x\"\n",
            "assets.LTC.backend",
        ),
        (
            "[assets.LTC]\nbackend = \"core-rpc\"\nurl = \"http://x\"\nnetwork = \"regtest\"\naddresses = [\"ltc1qkehv22jw3dzxlwdj29wvh70m5nwanc3jyajwwz\"]\n",
            "assets.LTC.addresses[0]",
        ),
        (
            "[assets.LTC]\nbackend = \"core-rpc\"\nurl = \"http://x\"\naddresses = [\"ltc1qkehv22jw3dzxlwdj29wvh70m5nwanc3jyajwwy\"]\n",
            "assets.LTC.addresses[0]",
        ),
        (
            "[assets.LTC]\nbackend = \"core-rpc\"\nurl = \"http://x\"\npoll_interval = \"5\"\n",
            "assets.LTC.poll_interval",
        ),
        (
            "[assets.LTC]\nbackend = \"core-rpc\"\nurl = \"http://x\"\nmatch = \"tag\"\n",
            "assets.LTC.match",
        ),
        (
            "[assets.LTC]\nbackend = \"core-rpc\"\nurl = \"http://x\"\nrpc_user = \"u\"\n",
            "assets.LTC.rpc_password_file",
        ),
        (
            "[webhook]\nurl = \"http://x\"\n[assets.LTC]\nbackend = \"core-rpc\"\nurl = \"http://x\"\n",
            "webhook.secret_file",
        ),
        ("", "assets"),
    ];
    for (text, key) in cases {
        let e = parse(text).expect_err(key);
        let shown = e.to_string();
        assert!(shown.contains(key), "{key}: {shown}");
    }
}

#[test]
fn wrong_network_is_explained() {
    let e = parse(&format!(
        "[assets.LTC]\nbackend = \"core-rpc\"\nurl = \"http://x\"\nnetwork = \"regtest\"\naddresses = [\"{}\"]\n",
        valid_ltc_mainnet()
    ))
    .expect_err("mainnet address on regtest");
    assert!(e.to_string().contains("mainnet"), "{e}");
}

#[test]
fn durations() {
    assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
    assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    for bad in ["", "5", "s", "-5s", "1.5h", "0s", "5 weeks"] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
}

#[test]
fn secrets_come_from_files_and_never_print() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret_path = dir.path().join("pw");
    std::fs::write(&secret_path, "s3cret-password\n").expect("write");
    let c = parse(&format!(
        "[assets.LTC]\nbackend = \"core-rpc\"\nurl = \"http://x\"\nrpc_user = \"u\"\nrpc_password_file = \"{}\"\n",
        secret_path.display()
    ))
    .expect("valid");
    let debug = format!("{c:?}");
    assert!(!debug.contains("s3cret-password"), "Debug leaks the secret: {debug}");
    match &c.assets[0].backend {
        BackendConfig::CoreRpc {
            auth: RpcAuth::UserPassword { password, .. },
        } => assert_eq!(password.expose(), "s3cret-password"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_key_of_another_backend_is_refused_naming_its_backend() {
    let cases = [
        (
            "[assets.LTC]\nbackend = \"core-rpc\"\nurl = \"http://x\"\ncontract = \"x\"\n",
            "assets.LTC.contract",
            "\"evm\" and \"tron-http\"",
        ),
        (
            "[assets.USDT_BSC]\nbackend = \"evm\"\nurl = \"http://x\"\nrpc_user = \"u\"\n",
            "assets.USDT_BSC.rpc_user",
            "\"core-rpc\"",
        ),
        (
            "[assets.XRP]\nbackend = \"rippled\"\nurl = \"http://x\"\naddresses = [\"rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh\"]\nrpc_password_file = \"/nonexistent\"\n",
            "assets.XRP.rpc_password_file",
            "\"core-rpc\"",
        ),
        (
            "[assets.BTC]\nbackend = \"esplora\"\nurl = \"http://x\"\napi_version = 2\n",
            "assets.BTC.api_version",
            "\"rippled\"",
        ),
    ];
    for (text, key, owner) in cases {
        let shown = parse(text).expect_err(key).to_string();
        assert!(shown.contains(key) && shown.contains(owner), "{key}: {shown}");
    }
}

#[test]
fn each_backend_carries_its_own_settings() {
    let c = parse(
        "[assets.USDT_BSC]\nbackend = \"evm\"\nurl = \"http://x\"\naddresses = [\"0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed\"]\nchain_id = 97\n\
         [assets.XRP]\nbackend = \"rippled\"\nurl = \"http://x\"\naddresses = [\"rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh\"]\n",
    )
    .expect("valid");
    let bsc = c.asset(Asset::UsdtBsc).expect("bsc");
    match &bsc.backend {
        BackendConfig::Evm(token) => {
            assert_eq!((token.chain_id, token.decimals), (97, 18));
            assert_eq!(token.contract, defaults::USDT_BSC_CONTRACT);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(bsc.max_blocks_per_poll, defaults::EVM_BLOCKS_PER_POLL);
    let xrp = c.asset(Asset::Xrp).expect("xrp");
    assert!(matches!(xrp.backend, BackendConfig::Rippled { api_version: 2 }));
    assert_eq!(xrp.max_blocks_per_poll, defaults::XRP_LEDGERS_PER_POLL);
}

#[test]
fn defaults_that_payment_uris_and_budgets_depend_on() {
    let c = parse(
        "[assets.USDT_BSC]\nbackend = \"evm\"\nurl = \"http://x\"\naddresses = [\"0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed\"]\n\
         [assets.USDT_TRC20]\nbackend = \"tron-http\"\nurl = \"https://api.trongrid.io\"\naddresses = [\"TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t\"]\n",
    )
    .expect("valid");
    let bsc = c.asset(Asset::UsdtBsc).expect("bsc");
    assert_eq!(bsc.policy.contract.as_deref(), Some(defaults::USDT_BSC_CONTRACT));
    assert_eq!(bsc.policy.chain_id, Some(defaults::BSC_CHAIN_ID));
    assert_eq!(bsc.policy.expires_in, chrono::Duration::minutes(30));
    assert_eq!(bsc.max_rps, 0.0);
    let tron = c.asset(Asset::UsdtTrc20).expect("tron");
    assert_eq!(
        tron.policy.contract.as_deref(),
        Some(paywatch_chains::tron::USDT_TRC20_CONTRACT)
    );
    assert_eq!(tron.max_rps, defaults::TRONGRID_MAX_RPS);
    assert_eq!(tron.poll_interval, defaults::POLL_INTERVAL);
    assert_eq!(tron.max_lag, defaults::max_lag(Asset::UsdtTrc20));
}

#[test]
fn named_tokens_are_checked_and_exclusive_with_the_single_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path
    };
    let asset = "[assets.LTC]\nbackend = \"core-rpc\"\nurl = \"http://x\"\n";
    let good = write(
        "good.toml",
        "[[token]]\nname = \"shop\"\ntoken = \"shop-token-0123456789abcd\"\nscopes = [\"read\", \"write\"]\n",
    );
    let c = parse(&format!("[api]\ntokens_file = {good:?}\n{asset}")).expect("valid");
    assert_eq!(c.api.tokens.len(), 1);
    assert_eq!(c.api.tokens[0].name, "shop");
    assert!(c.api.tokens[0].scopes.contains(&Scope::Write) && !c.api.tokens[0].scopes.contains(&Scope::Manual));
    assert!(
        !format!("{c:?}").contains("shop-token-0123456789abcd"),
        "Debug leaks a token"
    );

    let cases = [
        (
            "[[token]]\nname = \"a\"\ntoken = \"a-token-0123456789abcdefg\"\nscopes = [\"admin\"]\n",
            "\"admin\" is not a scope",
        ),
        (
            "[[token]]\nname = \"a\"\ntoken = \"short\"\nscopes = [\"read\"]\n",
            "at least 24",
        ),
        (
            "[[token]]\nname = \"a\"\ntoken = \"a-token-0123456789abcdefg\"\nscopes = []\n",
            "has no scope",
        ),
        (
            "[[token]]\nname = \"a\"\ntoken = \"a-token-0123456789abcdefg\"\nscopes = [\"read\"]\n[[token]]\nname = \"a\"\ntoken = \"b-token-0123456789abcdefg\"\nscopes = [\"read\"]\n",
            "used twice",
        ),
        (
            "[[token]]\nname = \"a\"\ntoken = \"a-token-0123456789abcdefg\"\nscopes = [\"read\"]\n[[token]]\nname = \"b\"\ntoken = \"a-token-0123456789abcdefg\"\nscopes = [\"read\"]\n",
            "same token",
        ),
        (
            "[[token]]\nname = \"a\"\ntoken = 1234567890123456789012345\nscopes = [\"read\"]\n",
            "not a tokens file",
        ),
        (
            "[[token]]\nname = \"a b\"\ntoken = \"a-token-0123456789abcdefg\"\nscopes = [\"read\"]\n",
            "must be letters",
        ),
        ("", "no [[token]]"),
        (
            "[[token]]\nname = \"a\"\ntoken = \"a-token-0123456789abcdefg\"\nscopes = [\"read\"]\nrole = 1\n",
            "role",
        ),
        (
            "[[token]]\nname = \"a\"\ntoken = 12345678\nscopes = [\"read\"]\n",
            "quoted string",
        ),
    ];
    for (i, (text, expected)) in cases.into_iter().enumerate() {
        let path = write(&format!("bad{i}.toml"), text);
        let shown = parse(&format!("[api]\ntokens_file = {path:?}\n{asset}"))
            .expect_err(expected)
            .to_string();
        assert!(
            shown.contains("api.tokens_file") && shown.contains(expected),
            "{expected}: {shown}"
        );
        assert!(
            !shown.contains("a-token-0123456789abcdefg") && !shown.contains("12345678"),
            "a token in an error: {shown}"
        );
    }
    let single = write("single", "one-token-0123456789");
    let both = parse(&format!(
        "[api]\ntokens_file = {good:?}\ntoken_file = {single:?}\n{asset}"
    ))
    .expect_err("both")
    .to_string();
    assert!(both.contains("api.tokens_file"), "{both}");
}

#[test]
fn usdt_takes_an_account_xpub_with_match_address_and_xrp_none() {
    let tron = "xpub6D1AabNHCupeiLM65ZR9UStMhJ1vCpyV4XbZdyhMZBiJXALQtmn9p42VTQckoHVn8WNqS7dqnJokZHAHcHGoaQgmv8D45oNUKx6DZMNZBCd";
    let c = parse(&format!(
        "[assets.USDT_TRC20]\nbackend = \"tron-http\"\nurl = \"http://x\"\nmatch = \"address\"\nxpub = \"{tron}\"\n"
    ))
    .expect("valid");
    let deriver = c.assets[0].policy.deriver.as_ref().expect("a deriver");
    assert_eq!(deriver.0.derive(0).expect("0"), "TUEZSdKsoDHQMeZwihtdoBiN46zxhGWYdH");
    let amount_mode = parse(&format!(
        "[assets.USDT_TRC20]\nbackend = \"tron-http\"\nurl = \"http://x\"\naddresses = [\"TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t\"]\nxpub = \"{tron}\"\n"
    ))
    .expect_err("amount mode")
    .to_string();
    assert!(
        amount_mode.contains("assets.USDT_TRC20.xpub") && amount_mode.contains("match"),
        "{amount_mode}"
    );
    let xrp = parse(&format!(
        "[assets.XRP]\nbackend = \"rippled\"\nurl = \"http://x\"\nmatch = \"address\"\nxpub = \"{tron}\"\n"
    ))
    .expect_err("xrp")
    .to_string();
    assert!(xrp.contains("assets.XRP.xpub"), "{xrp}");
}

#[test]
fn rates_sources_are_validated_and_named_in_errors() {
    let asset = format!(
        "[assets.LTC]\nbackend = \"core-rpc\"\nurl = \"http://127.0.0.1:9332\"\naddresses = [\"{}\"]\n",
        valid_ltc_mainnet()
    );
    let with = |rates: &str| parse(&format!("{asset}[rates]\n{rates}"));
    let c = with(
        "[[rates.source]]\nprovider = \"kraken\"\n[[rates.source]]\nprovider = \"fixed\"\nrates = { \"USDT_BSC/USD\" = \"1.0\" }\n",
    )
    .expect("valid");
    let rates = c.rates.expect("rates");
    assert_eq!(rates.currencies, ["USD"]);
    assert_eq!(
        (rates.refresh_interval, rates.max_rate_age),
        (defaults::RATES_REFRESH, defaults::RATES_MAX_AGE)
    );
    assert_eq!(rates.sources[0].url, "https://api.kraken.com");
    assert_eq!(
        rates.sources[1]
            .fixed
            .get(&(Asset::UsdtBsc, "USD".to_string()))
            .map(|d| d.to_string()),
        Some("1.0".into())
    );
    for (text, key) in [
        ("", "rates.source"),
        (
            "currencies = [\"usd\"]\n[[rates.source]]\nprovider = \"kraken\"\n",
            "rates.currencies",
        ),
        (
            "[[rates.source]]\nprovider = \"bitstamp\"\n",
            "rates.source[0].provider",
        ),
        (
            "[[rates.source]]\nprovider = \"kraken\"\n[[rates.source]]\nprovider = \"kraken\"\n",
            "rates.source[1].provider",
        ),
        ("[[rates.source]]\nprovider = \"fixed\"\n", "rates.source[0].rates"),
        (
            "[[rates.source]]\nprovider = \"fixed\"\nrates = { \"USDT_BSC/EUR\" = \"1\" }\n",
            "rates.source[0].rates.\"USDT_BSC/EUR\"",
        ),
        (
            "[[rates.source]]\nprovider = \"fixed\"\nrates = { \"USDT_BSC/USD\" = \"0\" }\n",
            "rates.source[0].rates.\"USDT_BSC/USD\"",
        ),
        (
            "[[rates.source]]\nprovider = \"kraken\"\nrates = { \"LTC/USD\" = \"1\" }\n",
            "rates.source[0].rates",
        ),
        (
            "[[rates.source]]\nprovider = \"kraken\"\nurl = \"ftp://x\"\n",
            "rates.source[0].url",
        ),
        (
            "refresh_interval = \"5m\"\nmax_rate_age = \"1m\"\n[[rates.source]]\nprovider = \"kraken\"\n",
            "rates.max_rate_age",
        ),
    ] {
        match with(text) {
            Err(e) => assert_eq!(e.key, key, "{text}: {e}"),
            Ok(_) => panic!("accepted: {text}"),
        }
    }
}

#[test]
fn rates_spread_and_sources_needed() {
    let base = format!(
        "[assets.LTC]\nbackend = \"core-rpc\"\nurl = \"http://127.0.0.1:9332\"\naddresses = [\"{}\"]\n[rates]\n",
        valid_ltc_mainnet()
    );
    let kraken = "[[rates.source]]\nprovider = \"kraken\"\n";
    let c = parse(&format!("{base}max_spread = \"0.5%\"\n{kraken}")).expect("valid");
    assert_eq!(c.rates.expect("rates").max_spread.to_string(), "0.005");
    for (text, key) in [
        (format!("{base}max_spread = \"2\"\n{kraken}"), "rates.max_spread"),
        (format!("{base}min_sources = 2\n{kraken}"), "rates.min_sources"),
        (format!("{base}min_sources = 0\n{kraken}"), "rates.min_sources"),
        (
            format!(
                "{base}[[rates.source]]\nprovider = \"fixed\"\nrates = {{ \"USDT_BSC/USD\" = \"1\", \"USDT_TRC20/USD\" = \"0.99\" }}\n"
            ),
            "rates.source[0].rates.\"USDT_TRC20/USD\"",
        ),
    ] {
        match parse(&text) {
            Err(e) => assert_eq!(e.key, key, "{text}: {e}"),
            Ok(_) => panic!("accepted: {text}"),
        }
    }
}
