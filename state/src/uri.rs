//! Payment URIs for QR codes (`payment_uri` in docs/openapi.json).

use rust_decimal::Decimal;

use crate::amount::{at_asset_scale, trimmed};
use crate::{Asset, AssetPolicy};

pub fn payment_uri(policy: &AssetPolicy, address: &str, tag: Option<u32>, amount: Decimal) -> String {
    uri(policy, address, tag, Some(amount))
}

/// The URI of a deposit target: any amount, so none is named.
pub fn deposit_uri(policy: &AssetPolicy, address: &str, tag: Option<u32>) -> String {
    uri(policy, address, tag, None)
}

fn uri(policy: &AssetPolicy, address: &str, tag: Option<u32>, amount: Option<Decimal>) -> String {
    let amount_text = amount.map(trimmed);
    let with_amount = |base: String, first: char| match &amount_text {
        Some(a) => format!("{base}{first}amount={a}"),
        None => base,
    };
    match policy.asset {
        Asset::Btc => with_amount(format!("bitcoin:{address}"), '?'),
        Asset::Ltc => with_amount(format!("litecoin:{address}"), '?'),
        Asset::Xrp => match tag {
            Some(t) => with_amount(format!("xrpl:{address}?dt={t}"), '&'),
            None => with_amount(format!("xrpl:{address}"), '?'),
        },
        Asset::UsdtBsc => {
            // EIP-681 token transfer: the target is the contract, the value in raw units.
            // At the asset's scale the mantissa is exactly the raw unit count.
            let contract = policy.contract.as_deref().unwrap_or_default();
            let chain = policy.chain_id.unwrap_or(56);
            let base = format!("ethereum:{contract}@{chain}/transfer?address={address}");
            match amount {
                Some(amount) => format!("{base}&uint256={}", at_asset_scale(Asset::UsdtBsc, amount).mantissa()),
                None => base,
            }
        }
        Asset::UsdtTrc20 => with_amount(format!("tron:{address}"), '?'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_per_asset() {
        let d = |s: &str| s.parse::<Decimal>().expect("decimal");
        let p = |a| AssetPolicy::defaults(a, vec![]);
        assert_eq!(
            payment_uri(&p(Asset::Ltc), "ltc1q", None, d("0.08421500")),
            "litecoin:ltc1q?amount=0.084215"
        );
        assert_eq!(
            payment_uri(&p(Asset::Btc), "bc1q", None, d("1.00000000")),
            "bitcoin:bc1q?amount=1"
        );
        assert_eq!(
            payment_uri(&p(Asset::Xrp), "rX", Some(7), d("12.5")),
            "xrpl:rX?dt=7&amount=12.5"
        );
        let mut bsc = p(Asset::UsdtBsc);
        bsc.contract = Some("0x55d398326f99059fF775485246999027B3197955".into());
        assert_eq!(
            payment_uri(&bsc, "0xAb", None, d("10.01")),
            "ethereum:0x55d398326f99059fF775485246999027B3197955@56/transfer?address=0xAb&uint256=10010000000000000000"
        );
        assert_eq!(
            payment_uri(&p(Asset::UsdtTrc20), "TX", None, d("5.000000")),
            "tron:TX?amount=5"
        );
    }
}
