//! Payment URIs for QR codes (`payment_uri` in docs/openapi.json).

use rust_decimal::Decimal;

use crate::amount::{at_asset_scale, trimmed};
use crate::{Asset, AssetPolicy};

pub fn payment_uri(policy: &AssetPolicy, address: &str, tag: Option<u32>, amount: Decimal) -> String {
    let amount_text = trimmed(amount);
    match policy.asset {
        Asset::Btc => format!("bitcoin:{address}?amount={amount_text}"),
        Asset::Ltc => format!("litecoin:{address}?amount={amount_text}"),
        Asset::Xrp => match tag {
            Some(t) => format!("xrpl:{address}?dt={t}&amount={amount_text}"),
            None => format!("xrpl:{address}?amount={amount_text}"),
        },
        Asset::UsdtBsc => {
            // EIP-681 token transfer: the target is the contract, the value in raw units.
            // At the asset's scale the mantissa is exactly the raw unit count.
            let raw = at_asset_scale(Asset::UsdtBsc, amount).mantissa();
            let contract = policy.contract.as_deref().unwrap_or_default();
            let chain = policy.chain_id.unwrap_or(56);
            format!("ethereum:{contract}@{chain}/transfer?address={address}&uint256={raw}")
        }
        Asset::UsdtTrc20 => format!("tron:{address}?amount={amount_text}"),
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
