//! Property tests: hostile, truncated or random responses from every backend
//! never panic a parser; they are errors or nothing.

use proptest::prelude::*;
use serde_json::{Value, json};

use crate::http::Answer;

/// JSON shaped with the field names the chain parsers read.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        prop::sample::select(vec![
            "Payment",
            "tesSUCCESS",
            "tecPATH_DRY",
            "SUCCESS",
            "OUT_OF_ENERGY",
            "unavailable",
            "4456",
            "18446744073709551616",
            "rPT1Sjq2YGrBMTttX4GZHjKu9dyfzbpAYe",
            "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef",
            "a614f803b6fd780986a42c78ec9c7f77e6ded13c",
            "0x1",
            "0xffffffffffffffffffffffffffffffffffffffffffffffff",
            "",
        ])
        .prop_map(|s| json!(s)),
        "[0-9a-fA-Fx]{0,70}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let key = prop::sample::select(vec![
            "tx_json",
            "tx",
            "transaction",
            "meta",
            "validated",
            "TransactionType",
            "Destination",
            "Account",
            "TransactionResult",
            "delivered_amount",
            "DestinationTag",
            "hash",
            "ledger_index",
            "ledger_hash",
            "id",
            "blockNumber",
            "receipt",
            "result",
            "log",
            "address",
            "topics",
            "data",
            "error",
            "status",
            "marker",
        ]);
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(key, inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, .. ProptestConfig::default() })]

    #[test]
    fn random_block_bytes_never_panic_the_decoder(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = crate::utxo::block::decode_block(&bytes);
        let _ = crate::utxo::block::decode_mempool_tx(&bytes);
    }

    #[test]
    fn random_account_tx_entries_never_panic_or_credit_garbage(entry in json_value()) {
        let watched = ["rPT1Sjq2YGrBMTttX4GZHjKu9dyfzbpAYe".to_string()].into_iter().collect();
        if let Some(obs) = crate::xrpl::payment_observation(&entry, &watched) {
            prop_assert!(obs.amount > rust_decimal::Decimal::ZERO);
        }
    }

    #[test]
    fn random_tron_transaction_infos_never_panic(infos in json_value()) {
        let endpoints = crate::http::Endpoints::new(vec!["http://127.0.0.1:1".into()], std::time::Duration::from_secs(1)).expect("endpoints");
        let source = crate::tron::TronSource::new(endpoints, None, crate::tron::USDT_TRC20_CONTRACT, crate::Network::Mainnet, 1).expect("source");
        let block = paywatch_state::BlockRef { height: 1, hash: "b".into() };
        let (account, canonical) = crate::tron::parse_tron_address("41cdae4e9a6287333a3f7df432b050af7b17e79e63").expect("address");
        let _ = source.transfers(&infos, &block, &[(account, canonical)].into_iter().collect());
    }

    #[test]
    fn random_node_answers_never_panic_the_answer_readers(status in 100u16..600, body in prop::collection::vec(any::<u8>(), 0..512), json in json_value()) {
        let _ = crate::rpc::judge_for_tests("m", "http://n", Answer { status, body: body.clone() });
        let _ = crate::rpc::judge_for_tests("m", "http://n", Answer { status, body: serde_json::to_vec(&json).unwrap_or_default() });
        let _ = crate::tron::judge_for_tests("/p", "http://n", status, &body);
        let _ = crate::xrpl::covers(&String::from_utf8_lossy(&body), 1, 2);
    }
}
