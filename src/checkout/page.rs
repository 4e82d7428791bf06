//! The page itself: HTML rendered on the server from the customer's view of
//! an intent (readable without JavaScript), and its QR code as inline SVG.

use paywatch_state::{Asset, IntentStatus, IntentView};
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
    /// Nothing will change any more.
    pub r#final: bool,
    pub asset: Asset,
    pub pay_amount: Decimal,
    pub received: Decimal,
    pub remaining: Option<Decimal>,
    pub confirmations: u64,
    pub confirmations_required: u32,
    pub confirmations_text: String,
    pub address: String,
    pub tag: Option<u32>,
    pub payment_uri: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<String>,
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
    match asset {
        Asset::Btc => "BTC",
        Asset::Ltc => "LTC",
        Asset::Xrp => "XRP",
        Asset::UsdtBsc | Asset::UsdtTrc20 => "USDT",
    }
}

impl CustomerView {
    pub fn of(intent: &IntentView, text: &Text, show_order: bool) -> CustomerView {
        use paywatch_state::Flag;
        let flag = |f: Flag| intent.flags.contains(&f);
        let remaining = (intent.received < intent.pay_amount).then(|| intent.pay_amount - intent.received);
        let (state, template) = match intent.status {
            IntentStatus::Confirmed => ("paid", text.paid),
            IntentStatus::Detected if flag(Flag::Underpaid) => ("underpaid", text.underpaid),
            IntentStatus::Detected => ("confirming", text.confirming),
            IntentStatus::Awaiting => ("awaiting", text.awaiting),
            IntentStatus::Expired if flag(Flag::PaidLate) => ("late", text.late),
            IntentStatus::Expired => ("expired", text.expired),
            IntentStatus::Cancelled => ("cancelled", text.cancelled),
        };
        let coin = coin_name(intent.asset);
        let state_text = template
            .replace("{received}", &intent.received.normalize().to_string())
            .replace("{remaining}", &remaining.unwrap_or_default().normalize().to_string())
            .replace("{asset}", coin);
        CustomerView {
            state,
            state_text,
            r#final: !intent.status.is_open(),
            asset: intent.asset,
            pay_amount: intent.pay_amount,
            received: intent.received,
            remaining,
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
            payment_uri: intent.payment_uri.clone(),
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
    let amount = view.pay_amount.normalize().to_string();
    let mut rows = String::new();
    rows.push_str(&format!(
        "<dt>{}</dt><dd class=\"pay\"><code data-field=\"amount\">{}</code><span>{coin}</span>{}</dd><dd class=\"hint\">{}</dd>",
        escape(text.amount),
        escape(&amount),
        copy_button(&amount, text),
        escape(text.exact_amount)
    ));
    rows.push_str(&format!(
        "<dt>{}</dt><dd class=\"pay\"><code data-field=\"address\">{}</code>{}</dd>",
        escape(text.address),
        escape(&view.address),
        copy_button(&view.address, text)
    ));
    if let Some(tag) = view.tag {
        rows.push_str(&format!(
            "<dt class=\"tag\">{}</dt><dd class=\"tag pay\"><code data-field=\"tag\">{tag}</code>{}</dd><dd class=\"warning\" data-field=\"tag-warning\">{}</dd>",
            escape(text.tag),
            copy_button(&tag.to_string(), text),
            escape(text.tag_warning)
        ));
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
    format!(
        "<!doctype html>\n<html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<meta name=\"robots\" content=\"noindex\"><title>{title}</title>\
<link rel=\"stylesheet\" href=\"assets/checkout.css\">\
<noscript><meta http-equiv=\"refresh\" content=\"15\"></noscript></head>\
<body><main data-token=\"{token}\" data-state=\"{state}\" data-final=\"{fin}\" data-copied=\"{copied}\">\
<h1>{heading}</h1>{price}\
<p class=\"state\" data-field=\"state-text\" role=\"status\" aria-live=\"polite\">{state_text}</p>\
<div class=\"qr pay\">{qr}</div><dl>{rows}</dl>\
<div class=\"meta\"><span data-field=\"confirmations\">{confirmations}</span>\
<span>{expires_in} <span data-field=\"countdown\" data-expires=\"{expires}\">{expires_text}</span></span></div>\
<noscript><p class=\"hint\">{no_script}</p></noscript>\
</main><script src=\"assets/checkout.js\"></script></body></html>\n",
        lang = text.lang,
        title = escape(text.title),
        token = escape(token),
        state = view.state,
        fin = view.r#final,
        copied = escape(text.copied),
        heading = escape(&heading),
        state_text = escape(&view.state_text),
        qr = qr_svg(&view.payment_uri, text.qr_label),
        confirmations = escape(&view.confirmations_text),
        expires_in = escape(text.expires_in),
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
