//! The page itself: HTML rendered on the server from the customer's view of
//! an intent (readable without JavaScript), and its QR code as inline SVG.

use paywatch_state::amount::trimmed;
use paywatch_state::uri::payment_uri;
use paywatch_state::{Asset, AssetPolicy, IntentStatus, IntentView, MatchMode};
use qrcode::{Color, QrCode};
use rust_decimal::Decimal;
use serde::Serialize;

use super::text::Text;

/// What the customer may see of an intent: nothing of the merchant but the
/// order reference, and that only when configured.
#[derive(Clone, Debug, Serialize)]
pub struct CustomerView {
    /// `awaiting`, `confirming`, `underpaid`, `paid`, `expired`, `late`, `cancelled`.
    pub state: &'static str,
    pub state_text: String,
    /// Nothing will change what the page shows any more: polling stops.
    pub r#final: bool,
    /// How often the page asks again.
    pub poll_seconds: u32,
    pub asset: Asset,
    pub pay_amount: Decimal,
    pub received: Decimal,
    /// What to send now, and its payment URI (the QR code); `None` when the
    /// customer must not send anything (paid, confirming, expired, ...).
    pub pay: Option<Pay>,
    pub confirmations: u64,
    pub confirmations_required: u32,
    pub confirmations_text: String,
    pub address: String,
    pub tag: Option<u32>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Pay {
    pub amount: Decimal,
    pub payment_uri: String,
}

pub fn network_name(asset: Asset) -> &'static str {
    match asset {
        Asset::Btc => "Bitcoin",
        Asset::Ltc => "Litecoin",
        Asset::Xrp => "XRP Ledger",
        Asset::UsdtBsc => "BNB Smart Chain (BEP-20)",
        Asset::UsdtTrc20 => "Tron (TRC-20)",
    }
}

fn coin_name(asset: Asset) -> &'static str {
    crate::rates::Coin::of(asset).code()
}

impl CustomerView {
    /// The view of `intent` at `now`. Past `expires_at` nothing is to be
    /// sent, even before the expiry scan has run: a payment then would be
    /// late. In `amount` mode a remainder cannot be matched by amount, so an
    /// underpaid customer is sent to the shop, not asked for more.
    pub fn of(
        intent: &IntentView,
        policy: Option<&AssetPolicy>,
        text: &Text,
        show_order: bool,
        now: chrono::DateTime<chrono::Utc>,
    ) -> CustomerView {
        use paywatch_state::Flag;
        let flag = |f: Flag| intent.flags.contains(&f);
        let remaining = (intent.received < intent.pay_amount).then(|| intent.pay_amount - intent.received);
        let past_expiry = now >= intent.expires_at;
        let by_amount = policy.is_some_and(|p| p.match_mode == MatchMode::Amount);
        let pay_for = |amount: Decimal| -> Option<Pay> {
            let payment_uri = match policy {
                _ if amount == intent.pay_amount => intent.payment_uri.clone(),
                Some(policy) => payment_uri(policy, &intent.address, intent.tag, amount),
                // No policy to build a URI for the rest: ask for nothing
                // rather than show a QR code for the whole amount.
                None => return None,
            };
            // As the customer types it, and the same text in the page and
            // in `/status` (the page compares them).
            Some(Pay {
                amount: amount.normalize(),
                payment_uri,
            })
        };
        // A rest below the asset's minimum would be dust, never credited.
        let rest_too_small = remaining.is_some_and(|r| policy.is_some_and(|p| r < p.min_amount));
        let (state, template, pay, fin) = match intent.status {
            IntentStatus::Confirmed => ("paid", text.paid, None, true),
            IntentStatus::Detected if flag(Flag::Underpaid) && past_expiry => {
                ("underpaid", text.expired_partial, None, false)
            }
            IntentStatus::Detected if flag(Flag::Underpaid) && (by_amount || rest_too_small) => {
                ("underpaid", text.underpaid_contact, None, false)
            }
            IntentStatus::Detected if flag(Flag::Underpaid) => {
                ("underpaid", text.underpaid, remaining.and_then(pay_for), false)
            }
            IntentStatus::Detected => ("confirming", text.confirming, None, false),
            IntentStatus::Awaiting if past_expiry => ("expired", text.expired, None, false),
            IntentStatus::Awaiting => ("awaiting", text.awaiting, pay_for(intent.pay_amount), false),
            IntentStatus::Expired if flag(Flag::PaidLate) => ("late", text.late, None, true),
            // Expired but late money may still come: it keeps asking, slowly.
            IntentStatus::Expired if intent.received > Decimal::ZERO => ("expired", text.expired_partial, None, false),
            IntentStatus::Expired => ("expired", text.expired, None, false),
            IntentStatus::Cancelled => ("cancelled", text.cancelled, None, true),
        };
        let coin = coin_name(intent.asset);
        let state_text = template
            .replace("{received}", &trimmed(intent.received))
            .replace("{remaining}", &trimmed(remaining.unwrap_or_default()))
            .replace("{amount}", &trimmed(intent.pay_amount))
            .replace("{asset}", coin);
        CustomerView {
            state,
            state_text,
            r#final: fin,
            poll_seconds: if intent.status.is_open() { 5 } else { 30 },
            asset: intent.asset,
            pay_amount: intent.pay_amount,
            received: intent.received,
            pay,
            confirmations: intent.confirmations,
            confirmations_required: intent.confirmations_required,
            confirmations_text: text
                .confirmations
                .replace(
                    "{n}",
                    &intent
                        .confirmations
                        .min(u64::from(intent.confirmations_required))
                        .to_string(),
                )
                .replace("{m}", &intent.confirmations_required.to_string()),
            address: intent.address.clone(),
            tag: intent.tag,
            expires_at: intent.expires_at,
            order: if show_order { intent.external_id.clone() } else { None },
            price: intent
                .fiat
                .as_ref()
                .map(|f| format!("{} {}", f.fiat_amount.normalize(), f.fiat_currency)),
        }
    }
}

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// The QR code of `data` as SVG: one square per dark module, a quiet zone
/// of four modules, no external resource.
pub fn qr_svg(data: &str, label: &str) -> String {
    let Ok(code) = QrCode::new(data.as_bytes()) else {
        return String::new();
    };
    let width = code.width();
    let size = width + 8;
    let mut path = String::new();
    for (i, color) in code.to_colors().iter().enumerate() {
        if *color == Color::Dark {
            path.push_str(&format!("M{},{}h1v1h-1z", i % width + 4, i / width + 4));
        }
    }
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {size} {size}\" role=\"img\" aria-label=\"{}\" data-modules=\"{width}\" shape-rendering=\"crispEdges\"><rect width=\"{size}\" height=\"{size}\" fill=\"#fff\"/><path fill=\"#000\" d=\"{path}\"/></svg>",
        escape(label)
    )
}

fn copy_button(value: &str, text: &Text) -> String {
    // Hidden until the script shows it: without JavaScript it cannot copy.
    format!(
        "<button type=\"button\" data-copy=\"{}\" hidden>{}</button>",
        escape(value),
        escape(text.copy)
    )
}

/// The whole page.
pub fn render(view: &CustomerView, token: &str, text: &Text) -> String {
    let coin = coin_name(view.asset);
    let heading = text
        .pay_with
        .replace("{asset}", &format!("{coin} ({})", network_name(view.asset)));
    let mut rows = String::new();
    let mut qr = String::new();
    if let Some(pay) = &view.pay {
        let amount = pay.amount.to_string();
        qr = format!(
            "<div class=\"qr pay\">{}</div>",
            qr_svg(&pay.payment_uri, text.qr_label)
        );
        rows.push_str(&format!(
            "<dt class=\"pay\">{}</dt><dd class=\"pay\"><code data-field=\"amount\">{}</code><span>{coin}</span>{}</dd><dd class=\"hint pay\">{}</dd>",
            escape(text.amount),
            escape(&amount),
            copy_button(&amount, text),
            escape(text.exact_amount)
        ));
        rows.push_str(&format!(
            "<dt class=\"pay\">{}</dt><dd class=\"pay\"><code data-field=\"address\">{}</code>{}</dd>",
            escape(text.address),
            escape(&view.address),
            copy_button(&view.address, text)
        ));
        if let Some(tag) = view.tag {
            rows.push_str(&format!(
                "<dt class=\"tag pay\">{}</dt><dd class=\"tag pay\"><code data-field=\"tag\">{tag}</code>{}</dd><dd class=\"warning pay\" data-field=\"tag-warning\">{}</dd>",
                escape(text.tag),
                copy_button(&tag.to_string(), text),
                escape(text.tag_warning)
            ));
        }
    }
    rows.push_str(&format!(
        "<dt>{}</dt><dd>{}</dd>",
        escape(text.network),
        escape(network_name(view.asset))
    ));
    if let Some(order) = &view.order {
        rows.push_str(&format!("<dt>{}</dt><dd>{}</dd>", escape(text.order), escape(order)));
    }
    let price = view
        .price
        .as_ref()
        .map(|p| format!("<p class=\"fiat\" data-field=\"price\">{}</p>", escape(p)))
        .unwrap_or_default();
    let expires = view.expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let expires_text = text
        .expired_at
        .replace("{time}", &view.expires_at.format("%Y-%m-%d %H:%M").to_string());
    let pay_amount = view.pay.as_ref().map(|p| p.amount.to_string()).unwrap_or_default();
    format!(
        "<!doctype html>\n<html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<meta name=\"robots\" content=\"noindex\"><title>{title}</title>\
<link rel=\"stylesheet\" href=\"assets/checkout.css\">\
<noscript><meta http-equiv=\"refresh\" content=\"15\"></noscript></head>\
<body><main data-token=\"{token}\" data-state=\"{state}\" data-final=\"{fin}\" data-poll=\"{poll}\" \
data-pay-amount=\"{pay_amount}\" data-copied=\"{copied}\" data-expires-in=\"{expires_in}\">\
<h1>{heading}</h1>{price}\
<p class=\"state\" data-field=\"state-text\" role=\"status\" aria-live=\"polite\">{state_text}</p>\
{qr}<dl>{rows}</dl>\
<div class=\"meta\"><span data-field=\"confirmations\">{confirmations}</span>\
<span data-field=\"expiry\" data-expires=\"{expires}\">{expires_text}</span></div>\
<noscript><p class=\"hint\">{no_script}</p></noscript>\
</main><script src=\"assets/checkout.js\"></script></body></html>\n",
        lang = text.lang,
        title = escape(text.title),
        token = escape(token),
        state = view.state,
        fin = view.r#final,
        poll = view.poll_seconds,
        pay_amount = escape(&pay_amount),
        copied = escape(text.copied),
        expires_in = escape(text.expires_in),
        heading = escape(&heading),
        state_text = escape(&view.state_text),
        confirmations = escape(&view.confirmations_text),
        expires_text = escape(&expires_text),
        no_script = escape(text.no_script),
    )
}

/// A page with one sentence (an invalid link, too many requests).
pub fn message(text: &Text, sentence: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"{}\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{}</title>\
<link rel=\"stylesheet\" href=\"assets/checkout.css\"></head><body><main><p class=\"state\">{}</p></main></body></html>\n",
        text.lang,
        escape(text.title),
        escape(sentence)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(status: IntentStatus, received: &str, flags: Vec<paywatch_state::Flag>) -> IntentView {
        let at = chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("time");
        IntentView {
            id: "pi_x".into(),
            asset: Asset::UsdtTrc20,
            status,
            amount: "10".parse().expect("d"),
            pay_amount: "10.01".parse().expect("d"),
            address: "T1".into(),
            tag: None,
            payment_uri: "tron:T1?amount=10.01".into(),
            received: received.parse().expect("d"),
            confirmations: 0,
            confirmations_required: 19,
            flags,
            payments: vec![],
            external_id: Some("order-1".into()),
            metadata: serde_json::json!({"secret": 1}),
            created_at: at,
            expires_at: at + chrono::Duration::minutes(30),
            detected_at: None,
            confirmed_at: None,
            resolution: None,
            fiat: None,
            checkout_url: None,
        }
    }

    #[test]
    fn the_page_asks_for_money_only_while_it_can_be_matched() {
        use paywatch_state::Flag;
        let text = &crate::checkout::text::EN;
        let mut policy = AssetPolicy::defaults(Asset::UsdtTrc20, vec!["T1".into()]);
        let at = chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("time");
        let open = intent(IntentStatus::Awaiting, "0", vec![]);
        let view = CustomerView::of(&open, Some(&policy), text, false, at);
        assert_eq!(
            (view.state, view.pay.map(|p| p.payment_uri)),
            ("awaiting", Some(open.payment_uri.clone()))
        );
        assert_eq!(view.order, None, "not unless configured");
        // Past the deadline, before the expiry scan: nothing to send.
        let late = CustomerView::of(&open, Some(&policy), text, false, at + chrono::Duration::hours(1));
        assert_eq!((late.state, late.pay, late.r#final), ("expired", None, false));
        // Underpaid: by address the rest is asked for, by amount it cannot be matched.
        let under = intent(IntentStatus::Detected, "4", vec![Flag::Underpaid]);
        let by_amount = CustomerView::of(&under, Some(&policy), text, false, at);
        assert!(
            by_amount.pay.is_none() && by_amount.state_text.contains("Contact the shop"),
            "{}",
            by_amount.state_text
        );
        policy.match_mode = MatchMode::Address;
        let by_address = CustomerView::of(&under, Some(&policy), text, false, at);
        let pay = by_address.pay.expect("the rest");
        assert_eq!(
            (pay.amount.to_string(), pay.payment_uri.as_str()),
            ("6.01".into(), "tron:T1?amount=6.01")
        );
        assert_eq!(
            serde_json::to_value(&pay).expect("json")["amount"],
            "6.01",
            "the status says the amount as the page does (the page reloads when they differ)"
        );
        // A rest below the minimum would be dust: the shop settles it.
        let nearly = intent(IntentStatus::Detected, "10", vec![Flag::Underpaid]);
        let view = CustomerView::of(&nearly, Some(&policy), text, false, at);
        assert!(view.pay.is_none() && view.state_text.contains("Contact the shop"));
        assert!(
            CustomerView::of(&under, None, text, false, at).pay.is_none(),
            "no policy: no QR for the rest"
        );
        // Expired after part of the money came: said, and nothing more asked.
        let expired = intent(IntentStatus::Expired, "4", vec![Flag::Underpaid]);
        let view = CustomerView::of(&expired, Some(&policy), text, false, at);
        assert!(
            view.pay.is_none() && view.state_text.contains("after we received 4 USDT"),
            "{}",
            view.state_text
        );
        assert!(!view.r#final, "late money may still come: it keeps asking");
        let page = render(&view, "t", text);
        assert!(!page.contains("<svg") && !page.contains("data-field=\"address\""));
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }

    #[test]
    fn the_qr_code_has_its_modules_and_a_quiet_zone() {
        let svg = qr_svg("litecoin:rltc1qexample?amount=0.1", "QR");
        assert!(svg.starts_with("<svg") && svg.contains("data-modules=\""), "{svg}");
        assert!(!svg.contains("M0,0"), "the quiet zone is empty");
        assert!(svg.contains("M4,4h1v1h-1z"), "the finder pattern's corner");
    }
}
