//! Fiat exchange rates for intents priced in fiat (docs/pricing.md).
//!
//! Sources are read in the background every `refresh_interval` and kept in
//! a `RateBook`; a create reads the book, never the network. A quote is the
//! median of the sources' fresh answers; an answer older than
//! `max_rate_age` is never used, and with none fresh there is no quote
//! (503 `rate_unavailable`), never a guess.
//!
//! - `providers` — each provider's request and answer

pub mod providers;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use paywatch_state::Asset;
use rust_decimal::Decimal;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::{Provider, RatesConfig};
use crate::metrics::Metrics;

/// What a rate is quoted for: USDT on BSC and on Tron are one coin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Coin {
    Btc,
    Ltc,
    Xrp,
    Usdt,
}

impl Coin {
    pub fn of(asset: Asset) -> Coin {
        match asset {
            Asset::Btc => Coin::Btc,
            Asset::Ltc => Coin::Ltc,
            Asset::Xrp => Coin::Xrp,
            Asset::UsdtBsc | Asset::UsdtTrc20 => Coin::Usdt,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Coin::Btc => "BTC",
            Coin::Ltc => "LTC",
            Coin::Xrp => "XRP",
            Coin::Usdt => "USDT",
        }
    }
}

/// One source's answer for one pair.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SourceQuote {
    pub rate: Decimal,
    /// When the price was current (the provider's time if it gives one,
    /// else when paywatch received it).
    pub at: DateTime<Utc>,
}

/// How a source has been answering.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SourceHealth {
    pub last_ok_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub errors: u64,
}

/// A usable rate: fiat per coin.
#[derive(Clone, Debug, PartialEq)]
pub struct Quote {
    pub rate: Decimal,
    /// `kraken`, or `median of coinbase, kraken, ...`.
    pub source: String,
    /// The time of the oldest answer it was made of.
    pub at: DateTime<Utc>,
}

/// Why there is no quote.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RateError {
    #[error("{0} is not a configured rates currency")]
    UnknownCurrency(String),
    #[error("no fresh rate for {coin}/{currency}: every source's answer is missing or older than max_rate_age")]
    Unavailable { coin: &'static str, currency: String },
}

#[derive(Default)]
struct Book {
    quotes: BTreeMap<(Coin, String), BTreeMap<Provider, SourceQuote>>,
    health: BTreeMap<Provider, SourceHealth>,
}

/// The rates read so far, shared by the fetcher and the API.
pub struct RateBook {
    pub config: RatesConfig,
    coins: Vec<Coin>,
    book: RwLock<Book>,
}

impl RateBook {
    /// A book for the coins of `assets`; fixed rates are in it from the start.
    pub fn new(config: RatesConfig, assets: &[Asset]) -> RateBook {
        let mut coins: Vec<Coin> = assets.iter().map(|a| Coin::of(*a)).collect();
        coins.sort();
        coins.dedup();
        RateBook {
            config,
            coins,
            book: RwLock::default(),
        }
    }

    /// The median of the fresh answers for `coin` in `currency` at `now`.
    pub fn quote(&self, coin: Coin, currency: &str, now: DateTime<Utc>) -> Result<Quote, RateError> {
        if !self.config.currencies.iter().any(|c| c == currency) {
            return Err(RateError::UnknownCurrency(currency.to_string()));
        }
        let max_age = chrono::Duration::from_std(self.config.max_rate_age).unwrap_or(chrono::Duration::MAX);
        let mut fresh: Vec<(Provider, SourceQuote)> = Vec::new();
        for source in &self.config.sources {
            if source.provider == Provider::Fixed {
                let fixed = source
                    .fixed
                    .iter()
                    .find(|((asset, c), _)| Coin::of(*asset) == coin && c == currency);
                if let Some((_, rate)) = fixed {
                    fresh.push((Provider::Fixed, SourceQuote { rate: *rate, at: now }));
                }
            }
        }
        {
            let book = self.book.read().unwrap_or_else(|p| p.into_inner());
            if let Some(answers) = book.quotes.get(&(coin, currency.to_string())) {
                // A price from the future (a provider's clock ahead) is as
                // fresh as now, no fresher.
                fresh.extend(
                    answers
                        .iter()
                        .filter(|(_, q)| now - q.at <= max_age)
                        .map(|(p, q)| (*p, q.clone())),
                );
            }
        }
        if fresh.is_empty() {
            return Err(RateError::Unavailable {
                coin: coin.code(),
                currency: currency.to_string(),
            });
        }
        let mut rates: Vec<Decimal> = fresh.iter().map(|(_, q)| q.rate).collect();
        rates.sort();
        let mid = rates.len() / 2;
        let rate = if rates.len() % 2 == 1 {
            rates[mid]
        } else {
            (rates[mid - 1] + rates[mid]) / Decimal::TWO
        };
        let names: Vec<&str> = fresh.iter().map(|(p, _)| p.name()).collect();
        Ok(Quote {
            rate: rate.normalize(),
            source: if names.len() == 1 {
                names[0].to_string()
            } else {
                format!("median of {}", names.join(", "))
            },
            at: fresh.iter().map(|(_, q)| q.at.min(now)).min().unwrap_or(now),
        })
    }

    /// Records one source's answers (or its failure) from one round.
    fn record(&self, provider: Provider, result: Result<Vec<providers::Price>, String>, now: DateTime<Utc>) {
        let mut book = self.book.write().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(prices) => {
                for p in prices {
                    book.quotes.entry((p.coin, p.currency)).or_default().insert(
                        provider,
                        SourceQuote {
                            rate: p.rate,
                            at: p.at.map(|at| at.min(now)).unwrap_or(now),
                        },
                    );
                }
                let health = book.health.entry(provider).or_default();
                health.last_ok_at = Some(now);
                health.last_error = None;
            }
            Err(e) => {
                let health = book.health.entry(provider).or_default();
                health.last_error = Some(e);
                health.errors += 1;
            }
        }
    }

    /// What `/v1/status` shows: each source's health and answers, and each
    /// pair's quote now.
    pub fn status(&self, now: DateTime<Utc>) -> serde_json::Value {
        let book = self.book.read().unwrap_or_else(|p| p.into_inner());
        let mut sources = serde_json::Map::new();
        for source in &self.config.sources {
            let p = source.provider;
            let health = book.health.get(&p).cloned().unwrap_or_default();
            let answers: serde_json::Map<String, serde_json::Value> = book
                .quotes
                .iter()
                .filter_map(|((coin, currency), by)| {
                    by.get(&p).map(|q| {
                        (
                            format!("{}/{currency}", coin.code()),
                            serde_json::json!({
                                "rate": q.rate,
                                "at": q.at,
                                "age_seconds": (now - q.at).num_seconds().max(0),
                            }),
                        )
                    })
                })
                .collect();
            sources.insert(
                p.name().to_string(),
                serde_json::json!({
                    "last_ok_at": health.last_ok_at,
                    "last_error": health.last_error,
                    "errors": health.errors,
                    "answers": answers,
                }),
            );
        }
        drop(book);
        let mut quotes = serde_json::Map::new();
        for coin in &self.coins {
            for currency in &self.config.currencies {
                let value = match self.quote(*coin, currency, now) {
                    Ok(q) => serde_json::json!({"rate": q.rate, "source": q.source, "at": q.at}),
                    Err(e) => serde_json::json!({"error": e.to_string()}),
                };
                quotes.insert(format!("{}/{currency}", coin.code()), value);
            }
        }
        serde_json::json!({"sources": sources, "quotes": quotes})
    }

    /// Refreshes the rate metrics from the book.
    pub fn refresh_metrics(&self, metrics: &Metrics, now: DateTime<Utc>) {
        let book = self.book.read().unwrap_or_else(|p| p.into_inner());
        for source in &self.config.sources {
            let p = source.provider;
            if p == Provider::Fixed {
                continue;
            }
            let health = book.health.get(&p).cloned().unwrap_or_default();
            metrics
                .rate_source_up
                .with_label_values(&[p.name()])
                .set(i64::from(health.last_ok_at.is_some() && health.last_error.is_none()));
            for ((coin, currency), by) in &book.quotes {
                if let Some(q) = by.get(&p) {
                    metrics
                        .rate_age
                        .with_label_values(&[p.name(), &format!("{}/{currency}", coin.code())])
                        .set((now - q.at).num_seconds().max(0));
                }
            }
        }
    }

    /// Reads every source once.
    pub async fn refresh(&self, http: &reqwest::Client, clock: &dyn Clock, metrics: &Metrics) {
        let rounds = self
            .config
            .sources
            .iter()
            .filter(|s| s.provider != Provider::Fixed)
            .map(|s| async move { (s.provider, self.read_source(http, s.provider, &s.url).await) });
        for (provider, result) in futures_util::future::join_all(rounds).await {
            if let Err(e) = &result {
                tracing::warn!(source = provider.name(), error = %e, "a rate source failed");
                metrics.rate_errors.with_label_values(&[provider.name()]).inc();
            }
            self.record(provider, result, clock.now());
        }
    }

    async fn read_source(
        &self,
        http: &reqwest::Client,
        provider: Provider,
        base: &str,
    ) -> Result<Vec<providers::Price>, String> {
        let mut prices = Vec::new();
        let mut failures = Vec::new();
        for request in providers::requests(provider, base, &self.coins, &self.config.currencies) {
            let answer = async {
                let response = http
                    .get(&request.url)
                    .timeout(self.config.timeout)
                    .send()
                    .await
                    .map_err(paywatch_chains::http::error_text)?;
                let status = response.status();
                let body: serde_json::Value = response
                    .json()
                    .await
                    .map_err(|e| format!("HTTP {status}, not JSON: {}", paywatch_chains::http::error_text(e)))?;
                if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                    return Err("rate limited (HTTP 429)".to_string());
                }
                // Error bodies are read too: they say why (Kraken's `error`, Binance's `msg`).
                providers::parse(provider, &request, &body).map_err(|e| format!("HTTP {}: {e}", status.as_u16()))
            };
            match answer.await {
                Ok(found) => prices.extend(found),
                Err(e) => failures.push(e),
            }
        }
        // Some pairs answered: keep them; the failures are still said.
        match (prices.is_empty(), failures.first()) {
            (true, Some(e)) => Err(e.clone()),
            (false, Some(e)) => {
                tracing::warn!(source = provider.name(), error = %e, "a rate source failed for some pairs");
                Ok(prices)
            }
            (_, None) => Ok(prices),
        }
    }
}

/// The background fetcher: reads every source at once, then every
/// `refresh_interval`, until cancelled.
pub async fn run(
    book: Arc<RateBook>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .user_agent(concat!("paywatch/", env!("CARGO_PKG_VERSION")))
        .build()?;
    loop {
        book.refresh(&http, clock.as_ref(), &metrics).await;
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(book.config.refresh_interval.max(Duration::from_millis(100))) => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::RateSource;

    fn config(sources: &[Provider]) -> RatesConfig {
        RatesConfig {
            currencies: vec!["USD".into()],
            refresh_interval: Duration::from_secs(30),
            max_rate_age: Duration::from_secs(120),
            timeout: Duration::from_secs(5),
            sources: sources
                .iter()
                .map(|p| RateSource {
                    provider: *p,
                    url: String::new(),
                    fixed: Default::default(),
                })
                .collect(),
        }
    }

    fn price(coin: Coin, rate: &str, at: Option<DateTime<Utc>>) -> providers::Price {
        providers::Price {
            coin,
            currency: "USD".into(),
            rate: rate.parse().unwrap(),
            at,
        }
    }

    #[test]
    fn the_quote_is_the_median_of_fresh_answers_and_stale_ones_never_count() {
        let book = RateBook::new(
            config(&[
                Provider::Kraken,
                Provider::Coinbase,
                Provider::Coingecko,
                Provider::Binance,
            ]),
            &[Asset::Ltc],
        );
        let now = Utc::now();
        book.record(Provider::Kraken, Ok(vec![price(Coin::Ltc, "100.10", None)]), now);
        book.record(Provider::Coinbase, Ok(vec![price(Coin::Ltc, "100.30", None)]), now);
        // CoinGecko's own time is ten minutes old: stale, whatever it says.
        book.record(
            Provider::Coingecko,
            Ok(vec![price(Coin::Ltc, "90", Some(now - chrono::Duration::minutes(10)))]),
            now,
        );
        book.record(Provider::Binance, Err("HTTP 500".into()), now);
        let q = book.quote(Coin::Ltc, "USD", now).unwrap();
        assert_eq!(q.rate.to_string(), "100.2", "mean of the two middles");
        assert_eq!(q.source, "median of kraken, coinbase");
        book.record(Provider::Binance, Ok(vec![price(Coin::Ltc, "200", None)]), now);
        assert_eq!(
            book.quote(Coin::Ltc, "USD", now).unwrap().rate.to_string(),
            "100.3",
            "an outlier moves the median one step only"
        );
        let later = now + chrono::Duration::seconds(121);
        assert_eq!(
            book.quote(Coin::Ltc, "USD", later),
            Err(RateError::Unavailable {
                coin: "LTC",
                currency: "USD".into()
            }),
            "every answer stale: no quote, never the last one seen"
        );
        assert_eq!(
            book.quote(Coin::Ltc, "EUR", now),
            Err(RateError::UnknownCurrency("EUR".into()))
        );
    }

    #[test]
    fn a_fixed_rate_is_always_fresh() {
        let mut c = config(&[Provider::Fixed]);
        c.sources[0]
            .fixed
            .insert((Asset::UsdtTrc20, "USD".into()), "1".parse().unwrap());
        let book = RateBook::new(c, &[Asset::UsdtTrc20, Asset::UsdtBsc]);
        let far = Utc::now() + chrono::Duration::days(400);
        let q = book.quote(Coin::of(Asset::UsdtBsc), "USD", far).unwrap();
        assert_eq!((q.rate.to_string(), q.source.as_str()), ("1".into(), "fixed"));
    }
}
