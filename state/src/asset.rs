//! The assets paywatch watches, and the per-asset facts the rest of the code
//! must agree on: on-chain decimals, default match mode and confirmation depth.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// One watched asset. The string form is the asset code (docs/assets.md).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Asset {
    #[serde(rename = "BTC")]
    Btc,
    #[serde(rename = "LTC")]
    Ltc,
    #[serde(rename = "XRP")]
    Xrp,
    #[serde(rename = "USDT_BSC")]
    UsdtBsc,
    #[serde(rename = "USDT_TRC20")]
    UsdtTrc20,
}

/// How a transfer is tied to an intent (docs/matching.md).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchMode {
    /// Each pending intent owns its address exclusively.
    Address,
    /// One shared address; each intent owns a destination tag (XRP).
    Tag,
    /// One shared address; each pending intent owns a unique `pay_amount`.
    Amount,
}

impl Asset {
    pub const ALL: [Asset; 5] = [Asset::Btc, Asset::Ltc, Asset::Xrp, Asset::UsdtBsc, Asset::UsdtTrc20];

    pub fn code(self) -> &'static str {
        match self {
            Asset::Btc => "BTC",
            Asset::Ltc => "LTC",
            Asset::Xrp => "XRP",
            Asset::UsdtBsc => "USDT_BSC",
            Asset::UsdtTrc20 => "USDT_TRC20",
        }
    }

    /// Decimals of the chain's base unit: every amount of this asset is kept
    /// at exactly this scale, so `"0.10000000"` and `"0.1"` are one value and
    /// one match key.
    pub fn decimals(self) -> u32 {
        match self {
            Asset::Btc | Asset::Ltc => 8,
            Asset::Xrp | Asset::UsdtTrc20 => 6,
            Asset::UsdtBsc => 18,
        }
    }

    pub fn default_match(self) -> MatchMode {
        match self {
            Asset::Btc | Asset::Ltc => MatchMode::Address,
            Asset::Xrp => MatchMode::Tag,
            Asset::UsdtBsc | Asset::UsdtTrc20 => MatchMode::Amount,
        }
    }

    /// Block depth required by default. On XRP, BSC and Tron the chain's own
    /// finality signal is required as well; this is only a floor there.
    pub fn default_confirmations(self) -> u32 {
        match self {
            Asset::Btc => 2,
            Asset::Ltc => 6,
            Asset::Xrp | Asset::UsdtBsc | Asset::UsdtTrc20 => 1,
        }
    }

    /// Step added to a taken `pay_amount` in `amount` match mode.
    pub fn default_amount_step(self) -> Decimal {
        match self {
            Asset::Btc | Asset::Ltc => Decimal::new(1, 8),
            Asset::Xrp => Decimal::new(1, 6),
            Asset::UsdtBsc | Asset::UsdtTrc20 => Decimal::new(1, 2),
        }
    }

    /// The default `min_amount`: transfers below it are dust or
    /// address-poisoning noise, recorded but never a payment. BTC/LTC: the
    /// relay dust limit of a P2PKH output (546 sat; Litecoin's relay fee makes
    /// its limit ten times that). XRP: 0.001 (spam payments carry a few
    /// drops). USDT: 0.1 (poisoning sends zero or fractions of a cent).
    pub fn default_min_amount(self) -> Decimal {
        match self {
            Asset::Btc => Decimal::new(546, 8),
            Asset::Ltc => Decimal::new(5460, 8),
            Asset::Xrp => Decimal::new(1, 3),
            Asset::UsdtBsc | Asset::UsdtTrc20 => Decimal::new(1, 1),
        }
    }

    /// Whether the chain has a mempool paywatch can watch for 0-conf detection.
    pub fn has_mempool(self) -> bool {
        matches!(self, Asset::Btc | Asset::Ltc)
    }
}

impl fmt::Display for Asset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// The asset code is not one of docs/assets.md.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown asset {0:?} (known: BTC, LTC, XRP, USDT_BSC, USDT_TRC20)")]
pub struct UnknownAsset(pub String);

impl FromStr for Asset {
    type Err = UnknownAsset;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Asset::ALL
            .into_iter()
            .find(|a| a.code() == s)
            .ok_or_else(|| UnknownAsset(s.to_string()))
    }
}

impl fmt::Display for MatchMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MatchMode::Address => "address",
            MatchMode::Tag => "tag",
            MatchMode::Amount => "amount",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_from_str_and_serde() {
        for asset in Asset::ALL {
            assert_eq!(asset.code().parse::<Asset>(), Ok(asset));
            let json = serde_json::to_string(&asset).expect("serialize");
            assert_eq!(json, format!("\"{}\"", asset.code()));
        }
        assert!("ltc".parse::<Asset>().is_err(), "codes are case-sensitive");
        assert!("DOGE".parse::<Asset>().is_err());
    }

    #[test]
    fn amount_steps_fit_the_asset_scale() {
        for asset in Asset::ALL {
            assert!(asset.default_amount_step().scale() <= asset.decimals());
        }
    }
}
