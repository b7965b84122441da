//! What the checkout page shows of a watched invoice, at one moment.

use crate::receive::checkout::settings::CheckoutSettings;
use crate::receive::watch::record::WatchedInvoice;

/// The page's three states. "Expired" can still turn "paid": the watch
/// goes on after expiry, and some wallets settle late.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageState {
    Open,
    Paid,
    Expired,
}

impl PageState {
    pub fn of(inv: &WatchedInvoice, now_ms: u64) -> PageState {
        if inv.is_paid() {
            PageState::Paid
        } else if now_ms >= inv.expires_at_ms {
            PageState::Expired
        } else {
            PageState::Open
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PageState::Open => "open",
            PageState::Paid => "paid",
            PageState::Expired => "expired",
        }
    }
}

/// Everything the page needs, already read out of the invoice.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckoutView {
    pub shop_name: String,
    pub payment_hash: String,
    pub payment_request: String,
    pub amount_sat: u64,
    /// The invoice's own description; for a description-hash invoice (a
    /// Lightning Address), what the address says instead.
    pub description: Option<String>,
    pub state: PageState,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
    pub now_ms: u64,
    pub success_url: Option<String>,
}

impl CheckoutView {
    pub fn new(inv: &WatchedInvoice, settings: &CheckoutSettings, now_ms: u64) -> CheckoutView {
        let description = backends::bolt11::parse(&inv.payment_request)
            .ok()
            .and_then(|p| p.description)
            .filter(|d| !d.trim().is_empty())
            .or_else(|| {
                inv.context
                    .lightning_address
                    .as_ref()
                    .map(|a| format!("Payment to {a}"))
            });
        CheckoutView {
            shop_name: settings.shop_name.clone(),
            payment_hash: inv.payment_hash.clone(),
            payment_request: inv.payment_request.clone(),
            amount_sat: inv.amount_sat,
            description,
            state: PageState::of(inv, now_ms),
            created_at_ms: inv.created_at_ms,
            expires_at_ms: inv.expires_at_ms,
            now_ms,
            success_url: inv.context.success_url.clone(),
        }
    }

    pub fn seconds_left(&self) -> u64 {
        self.expires_at_ms.saturating_sub(self.now_ms) / 1000
    }
}

/// `1,234 sats`, `1 sat`.
pub fn amount(sat: u64) -> String {
    let digits = sat.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    format!("{out} {}", if sat == 1 { "sat" } else { "sats" })
}

/// `9:05`, `1:02:03`, `3 days`: what the countdown starts from.
pub fn time_left(secs: u64) -> String {
    let (hours, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if secs >= 2 * 86_400 {
        format!("{} days", secs / 86_400)
    } else if hours > 0 {
        format!("{hours}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_and_times_read_naturally() {
        assert_eq!(amount(1), "1 sat");
        assert_eq!(amount(999), "999 sats");
        assert_eq!(amount(1234), "1,234 sats");
        assert_eq!(amount(1_000_000), "1,000,000 sats");
        assert_eq!(time_left(0), "0:00");
        assert_eq!(time_left(545), "9:05");
        assert_eq!(time_left(3723), "1:02:03");
        assert_eq!(time_left(30 * 3600), "30:00:00");
        assert_eq!(time_left(3 * 86_400), "3 days");
    }
}
