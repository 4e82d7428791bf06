//! Each provider's public ticker: the request for a coin in a currency, and
//! the reading of its answer (shapes from the providers' API documentation,
//! kept in `tests/fixtures/rates/`). Parsing is pure; prices are read from
//! their decimal text, never through a float.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::Value;

use super::Coin;
use crate::config::Provider;

/// What one request asks for: a URL, and which (coin, currency) pairs its
/// answer holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub url: String,
    pub pairs: Vec<(Coin, String)>,
}

/// A price read from an answer, and the provider's own time for it when
/// it gives one.
#[derive(Clone, Debug, PartialEq)]
pub struct Price {
    pub coin: Coin,
    pub currency: String,
    pub rate: Decimal,
    pub at: Option<DateTime<Utc>>,
}

/// The requests that cover `coins` in `currencies` on `provider` at `base`.
/// Pairs a provider has no market for are not asked (Binance has no USD
/// market, only USDT; its USDT market is not passed off as USD).
pub fn requests(provider: Provider, base: &str, coins: &[Coin], currencies: &[String]) -> Vec<Request> {
    let mut out = Vec::new();
    match provider {
        Provider::Coingecko => {
            let ids: Vec<&str> = coins.iter().map(|c| coingecko_id(*c)).collect();
            let vs: Vec<String> = currencies.iter().map(|c| c.to_lowercase()).collect();
            out.push(Request {
                url: format!(
                    "{base}/api/v3/simple/price?ids={}&vs_currencies={}&include_last_updated_at=true&precision=full",
                    ids.join(","),
                    vs.join(",")
                ),
                pairs: coins
                    .iter()
                    .flat_map(|c| currencies.iter().map(move |f| (*c, f.clone())))
                    .collect(),
            });
        }
        Provider::Fixed => {}
        _ => {
            for coin in coins {
                for currency in currencies {
                    let url = match provider {
                        Provider::Kraken => {
                            format!("{base}/0/public/Ticker?pair={}{currency}", kraken_asset(*coin))
                        }
                        Provider::Coinbase => format!("{base}/v2/prices/{}-{currency}/spot", coin.code()),
                        Provider::Binance if currency != "USD" && *coin != Coin::Usdt => {
                            format!("{base}/api/v3/ticker/price?symbol={}{currency}", coin.code())
                        }
                        _ => continue,
                    };
                    out.push(Request {
                        url,
                        pairs: vec![(*coin, currency.clone())],
                    });
                }
            }
        }
    }
    out
}

fn kraken_asset(coin: Coin) -> &'static str {
    match coin {
        Coin::Btc => "XBT",
        other => other.code(),
    }
}

fn coingecko_id(coin: Coin) -> &'static str {
    match coin {
        Coin::Btc => "bitcoin",
        Coin::Ltc => "litecoin",
        Coin::Xrp => "ripple",
        Coin::Usdt => "tether",
    }
}

/// A positive price from a JSON string or number, read from its text.
fn price(value: &Value) -> Result<Decimal, String> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => return Err(format!("price {other} is not a number")),
    };
    let rate: Decimal = text
        .parse()
        .or_else(|_| Decimal::from_scientific(&text))
        .map_err(|_| format!("price {text:?} is not a decimal"))?;
    if rate <= Decimal::ZERO {
        return Err(format!("price {text} is not positive"));
    }
    Ok(rate)
}

/// Reads one answer to `request`.
pub fn parse(provider: Provider, request: &Request, body: &Value) -> Result<Vec<Price>, String> {
    let pair = || request.pairs.first().cloned().ok_or("no pair asked");
    match provider {
        Provider::Kraken => {
            // {"error": [], "result": {"XXBTZUSD": {"c": ["67890.10000", "0.001"], ...}}}
            if let Some(errors) = body["error"].as_array().filter(|e| !e.is_empty()) {
                return Err(format!("kraken says {}", Value::Array(errors.clone())));
            }
            let result = body["result"].as_object().ok_or("no result object")?;
            let (name, ticker) = match result.iter().collect::<Vec<_>>().as_slice() {
                [one] => *one,
                other => return Err(format!("{} tickers for one pair", other.len())),
            };
            let (coin, currency) = pair()?;
            // Kraken names pairs its own way (XXBTZUSD, USDTZUSD): the
            // answer must be for the asset and currency asked.
            if !(name.contains(kraken_asset(coin)) && name.ends_with(currency.as_str())) {
                return Err(format!(
                    "an answer for {name} to a request for {}{currency}",
                    kraken_asset(coin)
                ));
            }
            // The middle of the best ask and bid is the price now. Never the
            // last trade (`c`): it carries no time and can be hours old on a
            // quiet pair, yet would be stamped fresh when it arrives.
            let rate = match (price(&ticker["a"][0]), price(&ticker["b"][0])) {
                (Ok(ask), Ok(bid)) if bid <= ask => bid + (ask - bid) / Decimal::TWO,
                (ask, bid) => {
                    return Err(format!(
                        "no usable best ask and bid (ask {}, bid {})",
                        ask.map_or_else(|e| e, |a| a.to_string()),
                        bid.map_or_else(|e| e, |b| b.to_string())
                    ));
                }
            };
            Ok(vec![Price {
                coin,
                currency,
                rate,
                at: None,
            }])
        }
        Provider::Coinbase => {
            // {"data": {"amount": "67890.12", "base": "BTC", "currency": "USD"}}
            let (coin, currency) = pair()?;
            let data = &body["data"];
            if data["base"] != coin.code() || data["currency"] != currency.as_str() {
                return Err(format!(
                    "an answer for {}-{} to a request for {}-{currency}",
                    data["base"],
                    data["currency"],
                    coin.code()
                ));
            }
            Ok(vec![Price {
                coin,
                currency,
                rate: price(&data["amount"])?,
                at: None,
            }])
        }
        Provider::Binance => {
            // {"symbol": "BTCEUR", "price": "62000.01000000"}
            let (coin, currency) = pair()?;
            let symbol = format!("{}{currency}", coin.code());
            if body["symbol"] != symbol.as_str() {
                return Err(format!("an answer for {} to a request for {symbol}", body["symbol"]));
            }
            Ok(vec![Price {
                coin,
                currency,
                rate: price(&body["price"])?,
                at: None,
            }])
        }
        Provider::Coingecko => {
            // {"bitcoin": {"usd": 67890.12, "last_updated_at": 1733040000}}
            let mut out = Vec::new();
            for (coin, currency) in &request.pairs {
                let entry = &body[coingecko_id(*coin)];
                let value = &entry[currency.to_lowercase()];
                // Not listed, or without the time it was asked for (an
                // aggregate's price with no time could be of any age): that
                // pair has no price from this source, which is said.
                let Some(at) = entry["last_updated_at"]
                    .as_i64()
                    .and_then(|secs| DateTime::from_timestamp(secs, 0))
                else {
                    continue;
                };
                if value.is_null() {
                    continue;
                }
                out.push(Price {
                    coin: *coin,
                    currency: currency.clone(),
                    rate: price(value)?,
                    at: Some(at),
                });
            }
            if out.is_empty() {
                return Err(format!("no price in {body}"));
            }
            Ok(out)
        }
        Provider::Fixed => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let path = format!("{}/tests/fixtures/rates/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("json")
    }

    fn one(provider: Provider, coin: Coin, currency: &str) -> Request {
        let found = requests(provider, "http://x", &[coin], &[currency.to_string()]);
        found.into_iter().next().expect("a request")
    }

    #[test]
    fn every_providers_documented_answer_reads_to_the_exact_price() {
        let kraken = parse(
            Provider::Kraken,
            &one(Provider::Kraken, Coin::Btc, "USD"),
            &fixture("kraken_ticker.json"),
        )
        .expect("kraken");
        assert_eq!(
            kraken[0].rate.to_string(),
            "97123.40000",
            "between the ask 97123.5 and the bid 97123.3"
        );
        let coinbase = parse(
            Provider::Coinbase,
            &one(Provider::Coinbase, Coin::Btc, "USD"),
            &fixture("coinbase_spot.json"),
        )
        .expect("coinbase");
        assert_eq!(coinbase[0].rate.to_string(), "97118.015");
        let binance = parse(
            Provider::Binance,
            &one(Provider::Binance, Coin::Btc, "EUR"),
            &fixture("binance_ticker_price.json"),
        )
        .expect("binance");
        assert_eq!(binance[0].rate.to_string(), "92350.01000000");
        let request = requests(
            Provider::Coingecko,
            "http://x",
            &[Coin::Btc, Coin::Usdt],
            &["USD".to_string(), "EUR".to_string()],
        )
        .remove(0);
        assert!(
            request.url.contains("ids=bitcoin,tether&vs_currencies=usd,eur"),
            "{}",
            request.url
        );
        let gecko = parse(Provider::Coingecko, &request, &fixture("coingecko_simple_price.json")).expect("gecko");
        let usd: Vec<String> = gecko
            .iter()
            .filter(|p| p.currency == "USD")
            .map(|p| p.rate.to_string())
            .collect();
        assert_eq!(usd, ["97130.12", "1.0002"]);
        assert!(gecko.iter().all(|p| p.at.is_some()), "last_updated_at read");
    }

    #[test]
    fn errors_and_wrong_answers_are_refused_not_read() {
        let request = one(Provider::Kraken, Coin::Btc, "USD");
        assert!(parse(Provider::Kraken, &request, &fixture("kraken_error.json")).is_err());
        let ltc = one(Provider::Kraken, Coin::Ltc, "USD");
        assert!(
            parse(Provider::Kraken, &ltc, &fixture("kraken_ticker.json")).is_err(),
            "an XBT answer to an LTC request"
        );
        let request = one(Provider::Coinbase, Coin::Ltc, "USD");
        assert!(
            parse(Provider::Coinbase, &request, &fixture("coinbase_spot.json")).is_err(),
            "a BTC answer to an LTC request"
        );
        let request = one(Provider::Binance, Coin::Btc, "EUR");
        assert!(parse(Provider::Binance, &request, &fixture("binance_error.json")).is_err());
        for bad in [
            serde_json::json!({"data": {"amount": "-1", "base": "BTC", "currency": "USD"}}),
            serde_json::json!({"data": {"amount": "abc", "base": "BTC", "currency": "USD"}}),
            serde_json::json!({"data": {"amount": null, "base": "BTC", "currency": "USD"}}),
        ] {
            assert!(
                parse(Provider::Coinbase, &one(Provider::Coinbase, Coin::Btc, "USD"), &bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_price_without_a_time_of_its_own_is_never_stamped_fresh() {
        // Kraken with no usable best ask and bid: its last trade has no time
        // and is not read.
        let request = one(Provider::Kraken, Coin::Btc, "USD");
        let mut ticker = fixture("kraken_ticker.json");
        let pair = ticker["result"]
            .as_object()
            .and_then(|r| r.keys().next().cloned())
            .expect("a pair");
        ticker["result"][&pair]["a"] = serde_json::json!([]);
        let refused = parse(Provider::Kraken, &request, &ticker).expect_err("no ask");
        assert!(refused.contains("no usable best ask and bid"), "{refused}");
        // CoinGecko without `last_updated_at` for a coin: that coin's
        // prices are left out (and said missing by the reader).
        let request = requests(
            Provider::Coingecko,
            "http://x",
            &[Coin::Btc, Coin::Usdt],
            &["USD".to_string()],
        )
        .remove(0);
        let mut answer = fixture("coingecko_simple_price.json");
        answer["bitcoin"]
            .as_object_mut()
            .expect("an object")
            .remove("last_updated_at");
        let read = parse(Provider::Coingecko, &request, &answer).expect("tether still reads");
        assert!(read.iter().all(|p| p.coin == Coin::Usdt), "{read:?}");
    }

    #[test]
    fn binance_is_never_asked_for_usd() {
        assert!(requests(Provider::Binance, "http://x", &[Coin::Btc], &["USD".into()]).is_empty());
        assert_eq!(
            requests(Provider::Binance, "http://x", &[Coin::Ltc], &["EUR".into()])[0].url,
            "http://x/api/v3/ticker/price?symbol=LTCEUR"
        );
        assert_eq!(
            requests(Provider::Kraken, "http://x", &[Coin::Btc], &["USD".into()])[0].url,
            "http://x/0/public/Ticker?pair=XBTUSD"
        );
    }
}
