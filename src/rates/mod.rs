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
    #[error("no usable rate for {coin}/{currency}: {why}")]
    Unavailable {
        coin: &'static str,
        currency: String,
        why: String,
    },
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
                // (Config refuses two assets of one coin with different fixed rates.)
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
        let unavailable = |why: String| RateError::Unavailable {
            coin: coin.code(),
            currency: currency.to_string(),
            why,
        };
        let Some(first) = median(fresh.iter().map(|(_, q)| q.rate)) else {
            return Err(unavailable(
                "every source's answer is missing or older than max_rate_age".into(),
            ));
        };
        // Answers too far from the median are left out; what is left must
        // still be enough sources. Two that disagree leave nothing to trust.
        let spread = self.config.max_spread;
        let (agreeing, outliers): (Vec<_>, Vec<_>) = fresh
            .into_iter()
            .partition(|(_, q)| (q.rate - first).abs() <= first * spread);
        if agreeing.len() < self.config.min_sources.max(1) {
            let names: Vec<String> = outliers
                .iter()
                .map(|(p, q)| format!("{} {}", p.name(), q.rate))
                .collect();
            return Err(unavailable(format!(
                "{} fresh answer(s) within {} of the median, {} needed (apart: {})",
                agreeing.len(),
                spread,
                self.config.min_sources.max(1),
                names.join(", ")
            )));
        }
        let fresh = agreeing;
        let rate = median(fresh.iter().map(|(_, q)| q.rate)).unwrap_or(first);
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

    /// Records one source's answers and its failure (a partial failure
    /// included) from one round.
    fn record(
        &self,
        provider: Provider,
        prices: Vec<(providers::Price, DateTime<Utc>)>,
        failure: Option<String>,
        now: DateTime<Utc>,
    ) {
        let mut book = self.book.write().unwrap_or_else(|p| p.into_inner());
        let answered = !prices.is_empty();
        for (p, received) in prices {
            // The provider's own time where it gives one, else the arrival;
            // a clock ahead of ours is no fresher than the arrival.
            let answer = SourceQuote {
                rate: p.rate,
                at: p.at.map_or(received, |at| at.min(received)).min(now),
            };
            let by_source = book.quotes.entry((p.coin, p.currency)).or_default();
            // A lagging mirror's older price (by the provider's own time)
            // never replaces a fresher one; an answer without a time of its
            // own always does (our clock may have stepped back).
            let older = p.at.is_some()
                && by_source
                    .get(&provider)
                    .is_some_and(|held| held.at.min(now) > answer.at);
            if !older {
                by_source.insert(provider, answer);
            }
        }
        let health = book.health.entry(provider).or_default();
        if answered {
            health.last_ok_at = Some(now);
        }
        if failure.is_some() {
            health.errors += 1;
        }
        health.last_error = failure;
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
            metrics
                .rate_source_up
                .with_label_values(&[p.name()])
                .set(i64::from(self.source_up(&book, p, now)));
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

    /// Whether a source serves: its last read answered every pair with no
    /// failure, and it holds a fresh answer. A source whose answers all
    /// carry old times of their own answers every read, yet serves nothing
    /// usable. (Any fresh answer, not all: a provider's own times trail by
    /// varying amounts, and one pair a little behind is not an outage.)
    fn source_up(&self, book: &Book, provider: Provider, now: DateTime<Utc>) -> bool {
        let health = book.health.get(&provider).cloned().unwrap_or_default();
        let max_age = chrono::Duration::from_std(self.config.max_rate_age).unwrap_or(chrono::Duration::MAX);
        health.last_ok_at.is_some()
            && health.last_error.is_none()
            && book
                .quotes
                .values()
                .filter_map(|by| by.get(&provider))
                .any(|q| now - q.at <= max_age)
    }

    /// Reads every source once.
    pub async fn refresh(&self, http: &reqwest::Client, clock: &dyn Clock, metrics: &Metrics) {
        let rounds = self
            .config
            .sources
            .iter()
            .filter(|s| s.provider != Provider::Fixed)
            .map(|s| async move { (s.provider, self.read_source(http, clock, s.provider, &s.url).await) });
        for (provider, (prices, failure)) in futures_util::future::join_all(rounds).await {
            if let Some(e) = &failure {
                tracing::warn!(source = provider.name(), error = %e, "a rate source failed");
                metrics.rate_errors.with_label_values(&[provider.name()]).inc();
            }
            self.record(provider, prices, failure, clock.now());
        }
    }

    /// One source's answers with when each arrived, and its first failure
    /// if any pair failed.
    async fn read_source(
        &self,
        http: &reqwest::Client,
        clock: &dyn Clock,
        provider: Provider,
        base: &str,
    ) -> (Vec<(providers::Price, DateTime<Utc>)>, Option<String>) {
        let mut prices = Vec::new();
        let mut failure = None;
        for request in providers::requests(provider, base, &self.coins, &self.config.currencies) {
            let answer = async {
                let mut response = http
                    .get(&request.url)
                    .timeout(self.config.timeout)
                    .send()
                    .await
                    .map_err(paywatch_chains::http::error_text)?;
                let status = response.status();
                if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                    return Err("rate limited (HTTP 429)".to_string());
                }
                let mut bytes = Vec::new();
                while let Some(chunk) = response.chunk().await.map_err(paywatch_chains::http::error_text)? {
                    bytes.extend_from_slice(&chunk);
                    if bytes.len() > MAX_ANSWER_BYTES {
                        return Err(format!(
                            "HTTP {}: an answer over {MAX_ANSWER_BYTES} bytes",
                            status.as_u16()
                        ));
                    }
                }
                let body: serde_json::Value =
                    serde_json::from_slice(&bytes).map_err(|e| format!("HTTP {}, not JSON: {e}", status.as_u16()))?;
                // Error bodies are read too: they say why (Kraken's `error`, Binance's `msg`).
                providers::parse(provider, &request, &body).map_err(|e| format!("HTTP {}: {e}", status.as_u16()))
            };
            match answer.await {
                Ok(found) => {
                    // A pair asked for and left out of the answer is a
                    // failure of that pair, said like any other.
                    if let Some((coin, currency)) = request
                        .pairs
                        .iter()
                        .find(|(coin, currency)| !found.iter().any(|p| p.coin == *coin && &p.currency == currency))
                    {
                        failure.get_or_insert(format!("no price for {}/{currency} in the answer", coin.code()));
                    }
                    let received = clock.now();
                    prices.extend(found.into_iter().map(|p| (p, received)));
                }
                Err(e) => {
                    failure.get_or_insert(truncated(&e));
                }
            }
        }
        (prices, failure)
    }
}

/// Largest answer read from a rate source.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Error text as shown in status and logs: bounded.
fn truncated(text: &str) -> String {
    const MAX: usize = 300;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// The median: the middle value, or halfway between the two middle ones.
fn median(values: impl Iterator<Item = Decimal>) -> Option<Decimal> {
    let mut sorted: Vec<Decimal> = values.collect();
    sorted.sort();
    let mid = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[mid]),
        // From the lower one up: no overflow near Decimal::MAX.
        _ => Some(sorted[mid - 1] + (sorted[mid] - sorted[mid - 1]) / Decimal::TWO),
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
        // A round that panics (a bug reading some answer) is logged and the
        // next one runs: rates go stale meanwhile, payments are not touched.
        let mut round = {
            let (book, http, clock, metrics) = (book.clone(), http.clone(), clock.clone(), metrics.clone());
            tokio::spawn(async move { book.refresh(&http, clock.as_ref(), &metrics).await })
        };
        tokio::select! {
            _ = cancel.cancelled() => {
                round.abort();
                return Ok(());
            }
            joined = &mut round => {
                if let Err(e) = joined
                    && e.is_panic()
                {
                    tracing::error!(error = %e, "a round of rate reads panicked; the next one runs as planned");
                }
            }
        }
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
            min_sources: 1,
            max_spread: "0.02".parse().unwrap(),
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
        book.record(
            Provider::Kraken,
            vec![(price(Coin::Ltc, "100.10", None), now)],
            None,
            now,
        );
        book.record(
            Provider::Coinbase,
            vec![(price(Coin::Ltc, "100.30", None), now)],
            None,
            now,
        );
        // CoinGecko's own time is ten minutes old: stale, whatever it says.
        let old = Some(now - chrono::Duration::minutes(10));
        book.record(Provider::Coingecko, vec![(price(Coin::Ltc, "90", old), now)], None, now);
        book.record(Provider::Binance, vec![], Some("HTTP 500".into()), now);
        let q = book.quote(Coin::Ltc, "USD", now).unwrap();
        assert_eq!(q.rate.to_string(), "100.2", "halfway between the two middle ones");
        assert_eq!(q.source, "median of kraken, coinbase");
        // A third source far off is left out, not averaged in.
        book.record(Provider::Binance, vec![(price(Coin::Ltc, "200", None), now)], None, now);
        let q = book.quote(Coin::Ltc, "USD", now).unwrap();
        assert_eq!(
            (q.rate.to_string(), q.source.as_str()),
            ("100.2".into(), "median of kraken, coinbase")
        );
        let later = now + chrono::Duration::seconds(121);
        assert!(
            matches!(book.quote(Coin::Ltc, "USD", later), Err(RateError::Unavailable { .. })),
            "every answer stale: no quote, never the last one seen"
        );
        assert_eq!(
            book.quote(Coin::Ltc, "EUR", now),
            Err(RateError::UnknownCurrency("EUR".into()))
        );
    }

    #[test]
    fn two_sources_that_disagree_give_no_quote_and_min_sources_holds() {
        let book = RateBook::new(config(&[Provider::Kraken, Provider::Coinbase]), &[Asset::Btc]);
        let now = Utc::now();
        book.record(
            Provider::Kraken,
            vec![(price(Coin::Btc, "97000", None), now)],
            None,
            now,
        );
        book.record(
            Provider::Coinbase,
            vec![(price(Coin::Btc, "48500", None), now)],
            None,
            now,
        );
        let refused = book.quote(Coin::Btc, "USD", now).unwrap_err().to_string();
        assert!(
            refused.contains("kraken 97000") && refused.contains("coinbase 48500"),
            "{refused}"
        );
        book.record(
            Provider::Coinbase,
            vec![(price(Coin::Btc, "97100", None), now)],
            None,
            now,
        );
        assert_eq!(book.quote(Coin::Btc, "USD", now).unwrap().rate.to_string(), "97050");
        let mut strict = config(&[Provider::Kraken, Provider::Coinbase]);
        strict.min_sources = 2;
        let book = RateBook::new(strict, &[Asset::Btc]);
        book.record(
            Provider::Kraken,
            vec![(price(Coin::Btc, "97000", None), now)],
            None,
            now,
        );
        assert!(book.quote(Coin::Btc, "USD", now).is_err(), "one source of two needed");
        // A failure of some pairs is said, even though others answered.
        book.record(
            Provider::Kraken,
            vec![(price(Coin::Btc, "97000", None), now)],
            Some("EUR: HTTP 500".into()),
            now,
        );
        assert_eq!(
            book.status(now)["sources"]["kraken"]["last_error"],
            serde_json::json!("EUR: HTTP 500")
        );
    }

    #[test]
    fn a_source_is_up_only_while_it_answers_everything_and_freshly() {
        let book = RateBook::new(config(&[Provider::Coingecko, Provider::Kraken]), &[Asset::Btc]);
        let now = Utc::now();
        let book_now = |book: &RateBook, p| {
            let held = book.book.read().unwrap_or_else(|e| e.into_inner());
            book.source_up(&held, p, now)
        };
        assert!(!book_now(&book, Provider::Kraken), "never read: not up");
        book.record(
            Provider::Kraken,
            vec![(price(Coin::Btc, "97000", None), now)],
            None,
            now,
        );
        assert!(book_now(&book, Provider::Kraken));
        // Answers whose own times are older than max_rate_age: read fine,
        // but nothing usable.
        let old = now - chrono::Duration::minutes(10);
        book.record(
            Provider::Coingecko,
            vec![(price(Coin::Btc, "97000", Some(old)), now)],
            None,
            now,
        );
        assert!(!book_now(&book, Provider::Coingecko), "only stale answers: not up");
        book.record(
            Provider::Coingecko,
            vec![(price(Coin::Usdt, "1", Some(now)), now)],
            None,
            now,
        );
        assert!(book_now(&book, Provider::Coingecko), "one fresh answer: up");
        book.record(
            Provider::Coingecko,
            vec![(price(Coin::Btc, "97000", Some(now)), now)],
            None,
            now,
        );
        assert!(book_now(&book, Provider::Coingecko));
        // A pair left out of an answer is a failure of that pair.
        book.record(
            Provider::Kraken,
            vec![(price(Coin::Btc, "97000", None), now)],
            Some("no price for BTC/EUR in the answer".into()),
            now,
        );
        assert!(!book_now(&book, Provider::Kraken), "a pair missing: not up");
    }

    #[test]
    fn an_older_answer_never_replaces_a_fresher_one() {
        let book = RateBook::new(config(&[Provider::Coingecko]), &[Asset::Btc]);
        let now = Utc::now();
        book.record(
            Provider::Coingecko,
            vec![(price(Coin::Btc, "97000", Some(now)), now)],
            None,
            now,
        );
        let lagging_mirror = Some(now - chrono::Duration::minutes(5));
        book.record(
            Provider::Coingecko,
            vec![(price(Coin::Btc, "90000", lagging_mirror), now)],
            None,
            now,
        );
        assert_eq!(book.quote(Coin::Btc, "USD", now).unwrap().rate.to_string(), "97000");
        // Without a time of its own, an answer always replaces: our clock
        // may have stepped back, and the new price is the one to use.
        let kraken = RateBook::new(config(&[Provider::Kraken]), &[Asset::Btc]);
        kraken.record(
            Provider::Kraken,
            vec![(price(Coin::Btc, "97000", None), now)],
            None,
            now,
        );
        let stepped_back = now - chrono::Duration::minutes(5);
        kraken.record(
            Provider::Kraken,
            vec![(price(Coin::Btc, "98000", None), stepped_back)],
            None,
            stepped_back,
        );
        assert_eq!(
            kraken.quote(Coin::Btc, "USD", stepped_back).unwrap().rate.to_string(),
            "98000"
        );
    }

    #[test]
    fn the_median_of_huge_prices_does_not_overflow() {
        let max = Decimal::MAX;
        assert_eq!(median([max, max].into_iter()), Some(max));
        assert_eq!(median(std::iter::empty()), None);
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
