//! `[rates]`: where fiat exchange rates come from, for intents priced in
//! fiat (docs/pricing.md).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use paywatch_state::Asset;
use rust_decimal::Decimal;
use serde::Deserialize;

use super::defaults;
use super::values::{ConfigError, duration_or, err, http_url};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRates {
    currencies: Option<Vec<String>>,
    refresh_interval: Option<String>,
    max_rate_age: Option<String>,
    timeout: Option<String>,
    min_sources: Option<usize>,
    max_spread: Option<String>,
    #[serde(default)]
    source: Vec<RawSource>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    provider: String,
    url: Option<String>,
    #[serde(default)]
    rates: BTreeMap<String, String>,
}

/// A public ticker paywatch reads rates from, or fixed rates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Provider {
    Kraken,
    Binance,
    Coinbase,
    Coingecko,
    Fixed,
}

impl Provider {
    pub const ALL: [Provider; 5] = [
        Provider::Kraken,
        Provider::Binance,
        Provider::Coinbase,
        Provider::Coingecko,
        Provider::Fixed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Provider::Kraken => "kraken",
            Provider::Binance => "binance",
            Provider::Coinbase => "coinbase",
            Provider::Coingecko => "coingecko",
            Provider::Fixed => "fixed",
        }
    }

    /// The public API's base URL.
    pub fn default_url(self) -> &'static str {
        match self {
            Provider::Kraken => "https://api.kraken.com",
            Provider::Binance => "https://api.binance.com",
            Provider::Coinbase => "https://api.coinbase.com",
            Provider::Coingecko => "https://api.coingecko.com",
            Provider::Fixed => "",
        }
    }
}

/// One configured source.
#[derive(Clone, Debug, PartialEq)]
pub struct RateSource {
    pub provider: Provider,
    /// Base URL (the provider's public API unless overridden).
    pub url: String,
    /// `fixed` only: per asset and currency.
    pub fixed: BTreeMap<(Asset, String), Decimal>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RatesConfig {
    /// Fiat currencies intents may be priced in (ISO 4217, upper case).
    pub currencies: Vec<String>,
    pub refresh_interval: Duration,
    /// A quote older than this is never used.
    pub max_rate_age: Duration,
    pub timeout: Duration,
    /// Fresh answers a quote needs, after outliers are left out.
    pub min_sources: usize,
    /// How far (a fraction) an answer may be from the median and still count.
    pub max_spread: Decimal,
    pub sources: Vec<RateSource>,
}

fn is_currency_code(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

pub(super) fn parse_rates(raw: RawRates) -> Result<RatesConfig, ConfigError> {
    let currencies = raw
        .currencies
        .unwrap_or_else(|| vec![defaults::RATES_CURRENCY.to_string()]);
    if currencies.is_empty() {
        return Err(err("rates.currencies", "name at least one currency, such as [\"USD\"]"));
    }
    for c in &currencies {
        if !is_currency_code(c) {
            return Err(err(
                "rates.currencies",
                format!("{c:?} is not an ISO 4217 code in upper case, such as \"USD\" or \"EUR\""),
            ));
        }
    }
    let refresh_interval = duration_or(
        "rates.refresh_interval",
        raw.refresh_interval.as_deref(),
        defaults::RATES_REFRESH,
    )?;
    let max_rate_age = duration_or(
        "rates.max_rate_age",
        raw.max_rate_age.as_deref(),
        defaults::RATES_MAX_AGE,
    )?;
    let timeout = duration_or("rates.timeout", raw.timeout.as_deref(), defaults::RATES_TIMEOUT)?;
    if max_rate_age <= refresh_interval {
        return Err(err(
            "rates.max_rate_age",
            "must be longer than rates.refresh_interval, or every quote goes stale before the next",
        ));
    }
    let min_sources = raw.min_sources.unwrap_or(defaults::RATES_MIN_SOURCES);
    if min_sources == 0 {
        return Err(err("rates.min_sources", "must be at least 1"));
    }
    let max_spread = match raw.max_spread.as_deref() {
        None => defaults::RATES_MAX_SPREAD,
        Some(text) => text
            .strip_suffix('%')
            .and_then(|n| n.trim().parse::<Decimal>().ok())
            .filter(|p| *p > Decimal::ZERO && *p < Decimal::ONE_HUNDRED)
            .map(|p| p / Decimal::ONE_HUNDRED)
            .ok_or_else(|| {
                err(
                    "rates.max_spread",
                    format!("{text:?} is not a percentage such as \"2%\""),
                )
            })?,
    };
    if raw.source.is_empty() {
        return Err(err(
            "rates.source",
            "add at least one [[rates.source]] (provider = kraken, binance, coinbase, coingecko or fixed)",
        ));
    }
    let mut seen = BTreeSet::new();
    let mut sources = Vec::new();
    for (n, s) in raw.source.into_iter().enumerate() {
        let key = format!("rates.source[{n}]");
        let provider = Provider::ALL
            .into_iter()
            .find(|p| p.name() == s.provider)
            .ok_or_else(|| {
                err(
                    format!("{key}.provider"),
                    format!("{:?} is not kraken, binance, coinbase, coingecko or fixed", s.provider),
                )
            })?;
        if !seen.insert(provider) {
            return Err(err(
                format!("{key}.provider"),
                format!("{} is listed twice", provider.name()),
            ));
        }
        let url = match (&s.url, provider) {
            (Some(_), Provider::Fixed) => return Err(err(format!("{key}.url"), "a fixed source has no url")),
            (Some(u), _) => {
                http_url(format!("{key}.url"), u)?;
                u.trim_end_matches('/').to_string()
            }
            (None, p) => p.default_url().to_string(),
        };
        let mut fixed = BTreeMap::new();
        match provider {
            Provider::Fixed if s.rates.is_empty() => {
                return Err(err(
                    format!("{key}.rates"),
                    "a fixed source needs rates, such as { \"USDT_TRC20/USD\" = \"1\" }",
                ));
            }
            Provider::Fixed => {
                for (pair, value) in &s.rates {
                    let rate_key = format!("{key}.rates.{pair:?}");
                    let (asset, currency) = pair
                        .split_once('/')
                        .ok_or_else(|| err(&rate_key, "name a pair as ASSET/CURRENCY, such as \"USDT_BSC/USD\""))?;
                    let asset: Asset = asset.parse().map_err(|e| err(&rate_key, e))?;
                    if !currencies.iter().any(|c| c == currency) {
                        return Err(err(&rate_key, format!("{currency} is not in rates.currencies")));
                    }
                    let rate: Decimal = value
                        .parse()
                        .ok()
                        .filter(|r: &Decimal| *r > Decimal::ZERO)
                        .ok_or_else(|| err(&rate_key, format!("{value:?} is not a positive decimal")))?;
                    // USDT on BSC and on Tron is one coin for rates.
                    if let Some(((other, _), earlier)) = fixed.iter().find(|((a, c), _): &(&(Asset, String), _)| {
                        *a != asset && c.as_str() == currency && same_coin(*a, asset)
                    }) && *earlier != rate
                    {
                        return Err(err(
                            &rate_key,
                            format!("{asset} and {other} are one coin for rates: give them one rate"),
                        ));
                    }
                    fixed.insert((asset, currency.to_string()), rate);
                }
            }
            _ if !s.rates.is_empty() => {
                return Err(err(format!("{key}.rates"), "only a fixed source has rates"));
            }
            _ => {}
        }
        sources.push(RateSource { provider, url, fixed });
    }
    if min_sources > sources.len() {
        return Err(err(
            "rates.min_sources",
            format!("{min_sources} sources needed but {} configured", sources.len()),
        ));
    }
    Ok(RatesConfig {
        currencies,
        refresh_interval,
        max_rate_age,
        timeout,
        min_sources,
        max_spread,
        sources,
    })
}

fn same_coin(a: Asset, b: Asset) -> bool {
    crate::rates::Coin::of(a) == crate::rates::Coin::of(b)
}
