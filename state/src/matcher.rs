//! Match keys: what ties a transfer to exactly one intent (docs/matching.md).
//!
//! Invariant: no two intents that can still receive (open, or ended within
//! their late window) hold the same key. The store enforces it when it hands
//! out addresses, tags and pay amounts; the property tests check it.

use rust_decimal::Decimal;

use crate::amount::at_asset_scale;
use crate::{Asset, MatchMode};

/// The key an intent holds, or a transfer looks up, under one match mode.
/// `None` when the mode cannot match (a tag-mode transfer without a tag: no
/// tag is not tag 0).
pub fn match_key(asset: Asset, mode: MatchMode, address: &str, tag: Option<u32>, amount: Decimal) -> Option<String> {
    let a = asset.code();
    match mode {
        MatchMode::Address => Some(format!("{a}/address/{address}")),
        MatchMode::Tag => tag.map(|t| format!("{a}/tag/{address}/{t}")),
        MatchMode::Amount => Some(format!("{a}/amount/{address}/{}", at_asset_scale(asset, amount))),
    }
}

/// Keys a transfer could match, most specific owner first. Every mode is
/// tried, so intents created before a change of `match` in the config are
/// still found.
pub fn candidate_keys(asset: Asset, address: &str, tag: Option<u32>, amount: Decimal) -> Vec<String> {
    [MatchMode::Address, MatchMode::Tag, MatchMode::Amount]
        .into_iter()
        .filter_map(|mode| match_key(asset, mode, address, tag, amount))
        .collect()
}

/// Candidate pay amounts in `amount` mode: `amount`, then `amount + step`,
/// ... up to `max_offsets` steps.
pub fn pay_amount_candidates(
    asset: Asset,
    amount: Decimal,
    step: Decimal,
    max_offsets: u32,
) -> impl Iterator<Item = Decimal> {
    (0..=max_offsets).map(move |n| at_asset_scale(asset, amount + step * Decimal::from(n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().expect("decimal")
    }

    #[test]
    fn amount_keys_are_canonical_whatever_the_scale() {
        let a = match_key(Asset::UsdtTrc20, MatchMode::Amount, "T1", None, d("10.5"));
        let b = match_key(Asset::UsdtTrc20, MatchMode::Amount, "T1", None, d("10.500000"));
        assert_eq!(a, b);
        assert_ne!(
            a,
            match_key(Asset::UsdtTrc20, MatchMode::Amount, "T1", None, d("10.51"))
        );
    }

    #[test]
    fn no_tag_is_not_tag_zero() {
        assert_eq!(match_key(Asset::Xrp, MatchMode::Tag, "r1", None, d("1")), None);
        assert_ne!(match_key(Asset::Xrp, MatchMode::Tag, "r1", Some(0), d("1")), None);
        assert_eq!(
            match_key(Asset::Xrp, MatchMode::Tag, "r1", Some(u32::MAX), d("1")).as_deref(),
            Some("XRP/tag/r1/4294967295")
        );
    }

    #[test]
    fn pay_amounts_step_up_from_the_amount() {
        let got: Vec<String> = pay_amount_candidates(Asset::UsdtBsc, d("10"), d("0.01"), 2)
            .map(|v| v.to_string())
            .collect();
        assert_eq!(
            got,
            [
                "10.000000000000000000",
                "10.010000000000000000",
                "10.020000000000000000"
            ]
        );
    }
}
