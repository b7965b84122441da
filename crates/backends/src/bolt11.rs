//! BOLT11 checks on invoices that providers hand back, using
//! `lightning-invoice`. A provider must not be trusted to have made the
//! invoice we asked for: amount, hash and network are verified.

use std::fmt;
use std::str::FromStr;

use lightning_invoice::{Currency, SignedRawBolt11Invoice};

/// BOLT11: without an `x` field an invoice expires an hour after its timestamp.
pub const DEFAULT_EXPIRY_SECS: u64 = 3600;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    Bitcoin,
    Testnet,
    Signet,
    Regtest,
}

impl Network {
    pub fn parse(s: &str) -> Option<Network> {
        match s.trim().to_ascii_lowercase().as_str() {
            "bitcoin" | "mainnet" => Some(Network::Bitcoin),
            "testnet" => Some(Network::Testnet),
            "signet" => Some(Network::Signet),
            "regtest" => Some(Network::Regtest),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Network::Bitcoin => "bitcoin",
            Network::Testnet => "testnet",
            Network::Signet => "signet",
            Network::Regtest => "regtest",
        }
    }

    pub(crate) fn currency(self) -> Currency {
        match self {
            Network::Bitcoin => Currency::Bitcoin,
            Network::Testnet => Currency::BitcoinTestnet,
            Network::Signet => Currency::Signet,
            Network::Regtest => Currency::Regtest,
        }
    }

    fn from_currency(c: Currency) -> Option<Network> {
        match c {
            Currency::Bitcoin => Some(Network::Bitcoin),
            Currency::BitcoinTestnet => Some(Network::Testnet),
            Currency::Signet => Some(Network::Signet),
            Currency::Regtest => Some(Network::Regtest),
            Currency::Simnet => None,
        }
    }
}

/// The fields of a BOLT11 invoice that the gateway acts on.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedInvoice {
    pub payment_hash: String,
    pub amount_msat: Option<u64>,
    pub network: Option<Network>,
    pub timestamp_secs: u64,
    pub expiry_secs: u64,
    pub description: Option<String>,
    pub description_hash: Option<String>,
}

impl ParsedInvoice {
    pub fn expires_at_secs(&self) -> u64 {
        self.timestamp_secs.saturating_add(self.expiry_secs)
    }

    pub fn is_expired_at(&self, now_secs: u64) -> bool {
        now_secs >= self.expires_at_secs()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Bolt11Error {
    Malformed(String),
    WrongNetwork { expected: Network, found: String },
    MissingAmount,
    AmountMismatch { expected_msat: u64, found_msat: u64 },
    HashMismatch { expected: String, found: String },
    Expired,
}

impl fmt::Display for Bolt11Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bolt11Error::Malformed(m) => write!(f, "not a valid BOLT11 invoice: {m}"),
            Bolt11Error::WrongNetwork { expected, found } => {
                write!(f, "invoice is for {found}, expected {}", expected.as_str())
            }
            Bolt11Error::MissingAmount => write!(f, "invoice has no amount"),
            Bolt11Error::AmountMismatch {
                expected_msat,
                found_msat,
            } => write!(
                f,
                "invoice amount is {found_msat} msat, expected {expected_msat} msat"
            ),
            Bolt11Error::HashMismatch { expected, found } => {
                write!(f, "invoice payment hash is {found}, expected {expected}")
            }
            Bolt11Error::Expired => write!(f, "invoice has expired"),
        }
    }
}

/// Parses and signature-checks a BOLT11 string (case-insensitive, `lightning:` prefix allowed).
///
/// Works on the signed raw invoice rather than `Bolt11Invoice`, whose
/// semantic check also demands modern feature bits: real backends (LNbits'
/// FakeWallet, older nodes) still issue invoices without them, and refusing
/// those would fail over for no reason. The signature, payment hash, amount,
/// network and expiry are all still checked.
pub fn parse(s: &str) -> Result<ParsedInvoice, Bolt11Error> {
    let s = s.trim();
    let s = s
        .strip_prefix("lightning:")
        .or_else(|| s.strip_prefix("LIGHTNING:"))
        .unwrap_or(s);
    if s.len() > 7_089 {
        return Err(Bolt11Error::Malformed("too long".into()));
    }
    let signed = SignedRawBolt11Invoice::from_str(&s.to_ascii_lowercase())
        .map_err(|e| Bolt11Error::Malformed(e.to_string()))?;
    if !signed.check_signature() {
        return Err(Bolt11Error::Malformed("invalid signature".into()));
    }
    let raw = signed.raw_invoice();
    let payment_hash = raw
        .payment_hash()
        .map(|h| h.0.to_string())
        .ok_or_else(|| Bolt11Error::Malformed("no payment hash".into()))?;
    let amount_msat = match raw.amount_pico_btc() {
        None => None,
        Some(p) if p % 10 != 0 => {
            return Err(Bolt11Error::Malformed("amount is not a whole msat".into()))
        }
        Some(p) => Some(p / 10),
    };
    Ok(ParsedInvoice {
        payment_hash,
        amount_msat,
        network: Network::from_currency(raw.currency()),
        timestamp_secs: raw.data.timestamp.as_unix_timestamp(),
        expiry_secs: raw
            .expiry_time()
            .map(|e| e.as_seconds())
            .unwrap_or(DEFAULT_EXPIRY_SECS),
        description: raw.description().map(|d| d.to_string()),
        description_hash: raw.description_hash().map(|h| h.0.to_string()),
    })
}

/// What the caller expects of an invoice.
#[derive(Debug, Clone, PartialEq)]
pub struct Expectation<'a> {
    pub network: Network,
    pub amount_msat: u64,
    pub payment_hash: Option<&'a str>,
    pub now_secs: u64,
}

/// Parses `s` and checks it against `want`.
pub fn verify(s: &str, want: &Expectation<'_>) -> Result<ParsedInvoice, Bolt11Error> {
    check(parse(s)?, want)
}

/// Checks an invoice [`parse`] returned against `want`: a caller that has
/// parsed it already does not pay for the signature check again (the
/// public-key recovery is most of a parse's CPU in wasm). It never checks
/// the signature itself: give it only what `parse` returned.
pub fn check(inv: ParsedInvoice, want: &Expectation<'_>) -> Result<ParsedInvoice, Bolt11Error> {
    if inv.network != Some(want.network) {
        let found = inv
            .network
            .map(|n| n.as_str().to_string())
            .unwrap_or_else(|| "simnet".into());
        return Err(Bolt11Error::WrongNetwork {
            expected: want.network,
            found,
        });
    }
    match inv.amount_msat {
        None => return Err(Bolt11Error::MissingAmount),
        Some(found) if found != want.amount_msat => {
            return Err(Bolt11Error::AmountMismatch {
                expected_msat: want.amount_msat,
                found_msat: found,
            })
        }
        Some(_) => {}
    }
    if let Some(expected) = want.payment_hash {
        if !expected.eq_ignore_ascii_case(&inv.payment_hash) {
            return Err(Bolt11Error::HashMismatch {
                expected: expected.to_ascii_lowercase(),
                found: inv.payment_hash.clone(),
            });
        }
    }
    if inv.is_expired_at(want.now_secs) {
        return Err(Bolt11Error::Expired);
    }
    Ok(inv)
}

/// True for exactly 64 hex digits.
pub fn is_payment_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock::sign_invoice;

    fn make(net: Network, msat: u64, now: u64) -> (String, String) {
        let inv = sign_invoice(net, msat, "test", None, 3600, now, [7u8; 32]);
        match inv {
            Ok(i) => (i.payment_request, i.payment_hash),
            Err(e) => panic!("mock signing failed: {e}"),
        }
    }

    fn want(net: Network, msat: u64, hash: Option<&str>, now: u64) -> Expectation<'_> {
        Expectation {
            network: net,
            amount_msat: msat,
            payment_hash: hash,
            now_secs: now,
        }
    }

    #[test]
    fn accepts_a_matching_invoice() {
        let (pr, hash) = make(Network::Bitcoin, 1_000_000, 1_700_000_000);
        assert!(pr.starts_with("lnbc"));
        let inv = verify(
            &pr,
            &want(Network::Bitcoin, 1_000_000, Some(&hash), 1_700_000_100),
        );
        let inv = inv.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(inv.payment_hash, hash);
        assert_eq!(inv.expires_at_secs(), 1_700_003_600);
        assert_eq!(inv.description.as_deref(), Some("test"));
        // Upper case and a URI prefix are accepted too.
        assert!(parse(&format!("lightning:{}", pr.to_uppercase())).is_ok());
    }

    #[test]
    fn rejects_wrong_network() {
        let (pr, _) = make(Network::Regtest, 1_000, 1_700_000_000);
        assert!(pr.starts_with("lnbcrt"));
        let r = verify(&pr, &want(Network::Bitcoin, 1_000, None, 1_700_000_000));
        assert!(matches!(r, Err(Bolt11Error::WrongNetwork { .. })), "{r:?}");
    }

    #[test]
    fn rejects_inflated_amount_and_wrong_hash_and_expiry() {
        let (pr, _) = make(Network::Bitcoin, 2_000, 1_700_000_000);
        let r = verify(&pr, &want(Network::Bitcoin, 1_000, None, 1_700_000_000));
        assert!(matches!(r, Err(Bolt11Error::AmountMismatch { .. })));
        let other = "00".repeat(32);
        let r = verify(
            &pr,
            &want(Network::Bitcoin, 2_000, Some(&other), 1_700_000_000),
        );
        assert!(matches!(r, Err(Bolt11Error::HashMismatch { .. })));
        let r = verify(&pr, &want(Network::Bitcoin, 2_000, None, 1_700_003_600));
        assert_eq!(r, Err(Bolt11Error::Expired));
    }

    /// Issued by LNbits 1.6.2's FakeWallet: no feature bits, still a valid invoice.
    const LNBITS_FAKEWALLET: &str = "lnbc10u1p4sxn76dqz0qxqzjcsp5pypun0kgkylhnxhnk5h2gxspzze4u7jc487qc3qppkua6emckpyspp54wfd9vhruenr2nk757h3awg72s883l264pvzlxsnfht56nt5uhlq2m5fm2pcpj3dlue3f3gam3cxkgd802t47r4ufx6tlwv7skdn9hrhr5t8yvwy5lmjtmxvg9qu4na73u7razjaczahc2cq40tuptjncsqq9993yu";

    #[test]
    fn accepts_real_invoices_without_feature_bits() {
        let inv = parse(LNBITS_FAKEWALLET).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            inv.payment_hash,
            "ab92d2b2e3e666354edea7af1eb91e540e78fd5aa8582f9a134dd74d4d74e5fe"
        );
        assert_eq!(inv.amount_msat, Some(1_000_000));
        assert_eq!(inv.network, Some(Network::Bitcoin));
        assert_eq!(inv.expiry_secs, 600);
    }

    #[test]
    fn rejects_a_tampered_invoice() {
        // Changing the amount breaks the checksum; re-checksummed data breaks the signature.
        let tampered = LNBITS_FAKEWALLET.replacen("lnbc10u", "lnbc20u", 1);
        assert!(matches!(parse(&tampered), Err(Bolt11Error::Malformed(_))));
    }

    #[test]
    fn rejects_garbage() {
        for s in ["", "lnbc", "hello", "lnbc1qqqq", &"x".repeat(8000)] {
            assert!(matches!(parse(s), Err(Bolt11Error::Malformed(_))), "{s}");
        }
    }

    #[test]
    fn payment_hash_shape() {
        assert!(is_payment_hash(&"ab".repeat(32)));
        assert!(!is_payment_hash(&"ab".repeat(31)));
        assert!(!is_payment_hash(&"zz".repeat(32)));
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use crate::mock::sign_invoice;
    use bech32::{Bech32, Hrp};
    use proptest::prelude::*;

    const CHARSET: &str = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";
    const NOW: u64 = 1_700_000_000;

    fn network() -> impl Strategy<Value = Network> {
        prop::sample::select(vec![
            Network::Bitcoin,
            Network::Testnet,
            Network::Signet,
            Network::Regtest,
        ])
    }

    /// A valid invoice and what it was made with.
    fn invoice() -> impl Strategy<Value = (String, Network, u64, u64)> {
        (
            network(),
            1u64..=2_100_000_000_000,
            60u64..=604_800,
            "[ -~]{0,80}",
            any::<[u8; 32]>(),
        )
            .prop_map(|(net, msat, expiry, desc, preimage)| {
                let inv = sign_invoice(net, msat, &desc, None, expiry, NOW, preimage)
                    .unwrap_or_else(|e| panic!("signing: {e}"));
                (inv.payment_request, net, msat, expiry)
            })
    }

    fn want(net: Network, msat: u64) -> Expectation<'static> {
        Expectation {
            network: net,
            amount_msat: msat,
            payment_hash: None,
            now_secs: NOW + 1,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn parse_and_verify_never_panic(s in any::<String>(), net in network(), msat in any::<u64>(), now in any::<u64>()) {
            let _ = parse(&s);
            let w = Expectation { network: net, amount_msat: msat, payment_hash: Some(&s), now_secs: now };
            let _ = verify(&s, &w);
        }

        /// Shaped like an invoice (a BOLT11 prefix, amount, separator and
        /// bech32 letters), so parsing gets past the first checks.
        #[test]
        fn never_panics_on_invoice_shaped_strings(
            hrp in "(lightning:)?ln(bc|tb|tbs|bcrt|sb)[0-9]{0,25}[munpx]?",
            data in "[qpzry9x8gf2tvdw0s3jn54khce6mua7l1]{0,800}",
        ) {
            let _ = parse(&format!("{hrp}1{data}"));
        }

        /// Random data under a valid checksum reaches the tagged-field parser,
        /// the amount and the signature recovery.
        #[test]
        fn never_panics_on_checksummed_garbage(
            hrp in "ln(bc|tb|tbs|bcrt|sb)([1-9][0-9]{0,20}[munp]?)?",
            data in prop::collection::vec(any::<u8>(), 0..600),
        ) {
            let Ok(hrp) = Hrp::parse(&hrp) else { return Ok(()) };
            let Ok(s) = bech32::encode::<Bech32>(hrp, &data) else { return Ok(()) };
            if let Ok(inv) = parse(&s) {
                // Whatever it accepts is self-consistent.
                prop_assert_eq!(inv.payment_hash.len(), 64);
                prop_assert!(inv.expires_at_secs() >= inv.timestamp_secs);
            }
        }

        #[test]
        fn a_valid_invoice_is_accepted_as_made((pr, net, msat, expiry) in invoice()) {
            let inv = verify(&pr, &want(net, msat)).unwrap_or_else(|e| panic!("{e}: {pr}"));
            prop_assert_eq!(inv.amount_msat, Some(msat));
            prop_assert_eq!(inv.network, Some(net));
            prop_assert_eq!(inv.expires_at_secs(), NOW + expiry);
            prop_assert!(parse(&pr.to_uppercase()).is_ok());
        }

        /// One character changed into any other (case aside) is always refused.
        #[test]
        fn one_changed_character_is_refused(
            (pr, net, msat, _expiry) in invoice(),
            at in any::<prop::sample::Index>(),
            with in prop::sample::select(
                format!("{CHARSET}{}1bio0 é\u{0}⚡", CHARSET.to_uppercase()).chars().collect::<Vec<_>>(),
            ),
        ) {
            let mut chars: Vec<char> = pr.chars().collect();
            let i = at.index(chars.len());
            prop_assume!(!chars[i].eq_ignore_ascii_case(&with));
            chars[i] = with;
            let bad: String = chars.into_iter().collect();
            prop_assert!(parse(&bad).is_err(), "accepted {bad} (from {pr})");
            prop_assert!(verify(&bad, &want(net, msat)).is_err());
        }

        /// Cut short or extended, it is refused too.
        #[test]
        fn a_truncated_or_extended_invoice_is_refused(
            (pr, _net, _msat, _expiry) in invoice(),
            cut in any::<prop::sample::Index>(),
            extra in "[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{1,8}",
        ) {
            let keep = cut.index(pr.len());
            prop_assert!(parse(&pr[..keep]).is_err());
            let longer = format!("{pr}{extra}");
            prop_assert!(parse(&longer).is_err());
        }

        /// What the caller expects is enforced: another network, amount or
        /// hash, or a later time than the expiry, is refused.
        #[test]
        fn verify_enforces_the_expectation(
            (pr, net, msat, expiry) in invoice(),
            other_net in network(),
            other_msat in 1u64..=2_100_000_000_000,
            late in 0u64..1_000_000,
        ) {
            if other_net != net {
                let wrong_network = matches!(verify(&pr, &want(other_net, msat)), Err(Bolt11Error::WrongNetwork { .. }));
                prop_assert!(wrong_network);
            }
            if other_msat != msat {
                let mismatch = matches!(verify(&pr, &want(net, other_msat)), Err(Bolt11Error::AmountMismatch { .. }));
                prop_assert!(mismatch);
            }
            let other_hash = "00".repeat(32);
            let w = Expectation { payment_hash: Some(&other_hash), ..want(net, msat) };
            let hash_mismatch = matches!(verify(&pr, &w), Err(Bolt11Error::HashMismatch { .. }));
            prop_assert!(hash_mismatch);
            let w = Expectation { now_secs: NOW + expiry + late, ..want(net, msat) };
            prop_assert_eq!(verify(&pr, &w), Err(Bolt11Error::Expired));
        }
    }
}
