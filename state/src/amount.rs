//! Exact amounts. Every amount is a `rust_decimal::Decimal` held at its
//! asset's scale (docs/assets.md: never floats), written in JSON as a string.

use rust_decimal::Decimal;

use crate::Asset;

/// Why an amount string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("{0:?} is not a decimal number")]
    NotANumber(String),
    #[error("{value:?} has more than the {decimals} decimals {asset} allows")]
    TooPrecise { value: String, asset: Asset, decimals: u32 },
    #[error("amount must be greater than zero")]
    NotPositive,
    #[error("{0} base units do not fit an exact decimal (at most 2^96)")]
    TooLarge(u128),
}

/// Parses a user-given amount (`"0.084215"`) for `asset`: plain decimal
/// notation only, strictly positive, no more decimals than the chain has.
/// The result is rescaled to the asset's scale.
pub fn parse_amount(asset: Asset, text: &str) -> Result<Decimal, AmountError> {
    let value = parse_plain_decimal(text).ok_or_else(|| AmountError::NotANumber(text.to_string()))?;
    if value.scale() > asset.decimals() {
        return Err(AmountError::TooPrecise {
            value: text.to_string(),
            asset,
            decimals: asset.decimals(),
        });
    }
    if value <= Decimal::ZERO {
        return Err(AmountError::NotPositive);
    }
    Ok(at_asset_scale(asset, value))
}

/// The coin amount of a fiat price at `rate` (fiat per coin), rounded
/// **up** to `decimals` (at most the asset's), so the customer never pays
/// less than the price (docs/pricing.md): the result times the rate is at
/// least the price, checked exactly. `None` when it does not fit.
pub fn amount_for_price(asset: Asset, fiat_amount: Decimal, rate: Decimal, decimals: u32) -> Option<Decimal> {
    if rate <= Decimal::ZERO || fiat_amount <= Decimal::ZERO {
        return None;
    }
    let decimals = decimals.min(asset.decimals());
    let quotient = fiat_amount.checked_div(rate)?;
    let mut amount = quotient.round_dp_with_strategy(decimals, rust_decimal::RoundingStrategy::AwayFromZero);
    // The division keeps 28 digits: a quotient rounded down in its last
    // digit could round up to one unit too few. One unit more then.
    if amount.checked_mul(rate)? < fiat_amount {
        amount = amount.checked_add(Decimal::new(1, decimals))?;
    }
    let amount = at_asset_scale(asset, amount);
    (amount > Decimal::ZERO && amount.scale() == asset.decimals()).then_some(amount)
}

/// A number in plain decimal notation (`12`, `0.084215`; no sign, exponent
/// or bare point), normalized; `None` for anything else.
pub fn parse_plain_decimal(text: &str) -> Option<Decimal> {
    let plain = !text.is_empty()
        && text.chars().all(|c| c.is_ascii_digit() || c == '.')
        && text.chars().filter(|&c| c == '.').count() <= 1
        && !text.starts_with('.')
        && !text.ends_with('.');
    plain
        .then(|| text.parse::<Decimal>().ok())
        .flatten()
        .map(|d| d.normalize())
}

/// Converts an integer count of base units (satoshis, drops, token units)
/// into an amount. Fallible: token values can exceed what a Decimal holds.
pub fn from_base_units(asset: Asset, units: u128) -> Result<Decimal, AmountError> {
    let signed = i128::try_from(units).map_err(|_| AmountError::TooLarge(units))?;
    Decimal::try_from_i128_with_scale(signed, asset.decimals()).map_err(|_| AmountError::TooLarge(units))
}

/// Returns `value` at exactly the asset's scale, so that its text form (and
/// every match key built from it) is canonical.
pub fn at_asset_scale(asset: Asset, value: Decimal) -> Decimal {
    let mut v = value;
    v.rescale(asset.decimals());
    v
}

/// A human form without trailing zeros, for payment URIs (`amount=0.1`).
pub fn trimmed(value: Decimal) -> String {
    value.normalize().to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_fiat_price_is_rounded_up_to_the_assets_precision() {
        let d = |s: &str| s.parse::<Decimal>().expect("decimal");
        // 49.99 / 70.12 = 0.712920707...: up, never down.
        assert_eq!(
            amount_for_price(Asset::Ltc, d("49.99"), d("70.12"), 8).map(|a| a.to_string()),
            Some("0.71292071".into())
        );
        // Exact quotients stay exact.
        assert_eq!(
            amount_for_price(Asset::UsdtTrc20, d("10"), d("1"), 6).map(|a| a.to_string()),
            Some("10.000000".into())
        );
        assert_eq!(
            amount_for_price(Asset::Xrp, d("1"), d("3"), 6).map(|a| a.to_string()),
            Some("0.333334".into())
        );
        assert_eq!(
            amount_for_price(Asset::UsdtBsc, d("49.99"), d("0.9998"), 18).map(|a| a.to_string()),
            Some("50.000000000000000000".into())
        );
        assert_eq!(
            amount_for_price(Asset::UsdtBsc, d("10"), d("3"), 18).map(|a| a.to_string()),
            Some("3.333333333333333334".into())
        );
        assert_eq!(amount_for_price(Asset::Btc, d("1"), d("0"), 8), None);
        // Rounded to fewer decimals (unique amounts in cents), still up.
        assert_eq!(
            amount_for_price(Asset::UsdtBsc, d("10"), d("1.0002"), 2).map(|a| a.to_string()),
            Some("10.000000000000000000".into())
        );
        assert_eq!(
            amount_for_price(Asset::UsdtTrc20, d("10"), d("0.9998"), 2).map(|a| a.to_string()),
            Some("10.010000".into())
        );
        // Never less than the price, whatever the division kept.
        for (fiat, rate) in [
            ("49.99", "70.2"),
            ("1", "3"),
            ("7", "0.0000001234567890123456789"),
            ("100000", "97123.4"),
        ] {
            let a = amount_for_price(Asset::Btc, d(fiat), d(rate), 8).expect("fits");
            assert!(a * d(rate) >= d(fiat), "{fiat} / {rate} = {a}");
            assert!(
                (a - Decimal::new(1, 8)) * d(rate) < d(fiat),
                "{fiat} / {rate} = {a}: one unit less is short"
            );
        }
    }

    use super::*;

    #[test]
    fn amounts_are_held_at_the_asset_scale() {
        assert_eq!(
            parse_amount(Asset::Ltc, "0.084215").map(|d| d.to_string()),
            Ok("0.08421500".into())
        );
        assert_eq!(
            parse_amount(Asset::Xrp, "12").map(|d| d.to_string()),
            Ok("12.000000".into())
        );
        assert_eq!(
            parse_amount(Asset::Ltc, "1.10").map(|d| d.to_string()),
            Ok("1.10000000".into())
        );
    }

    #[test]
    fn amounts_known_to_break_floats_stay_exact() {
        for text in ["0.29999999", "20999999.97690000", "0.1"] {
            let v = parse_amount(Asset::Btc, text).expect("valid");
            assert_eq!(v, text.parse::<Decimal>().expect("decimal"));
        }
        assert_eq!(
            from_base_units(Asset::Btc, 2_099_999_997_690_000).map(|d| d.to_string()),
            Ok("20999999.97690000".into())
        );
    }

    #[test]
    fn bad_amount_texts_are_refused() {
        for text in ["", "-1", "1e3", "0x10", " 1", "1.", ".5", "1.2.3", "abc", "NaN", "+1"] {
            assert!(
                matches!(parse_amount(Asset::Ltc, text), Err(AmountError::NotANumber(_))),
                "{text}"
            );
        }
        assert_eq!(parse_amount(Asset::Ltc, "0"), Err(AmountError::NotPositive));
        assert_eq!(parse_amount(Asset::Ltc, "0.00000000"), Err(AmountError::NotPositive));
        assert!(matches!(
            parse_amount(Asset::Ltc, "0.000000001"),
            Err(AmountError::TooPrecise { .. })
        ));
        // Trailing zeros beyond the scale are not extra precision.
        assert!(parse_amount(Asset::Ltc, "0.100000000000").is_ok());
    }

    #[test]
    fn token_values_beyond_a_decimal_are_errors_not_panics() {
        assert!(from_base_units(Asset::UsdtBsc, 99_999_999_999_999_999_999_999).is_ok());
        assert!(matches!(
            from_base_units(Asset::UsdtBsc, 1u128 << 100),
            Err(AmountError::TooLarge(_))
        ));
        assert!(matches!(
            from_base_units(Asset::UsdtBsc, u128::MAX),
            Err(AmountError::TooLarge(_))
        ));
    }
}
