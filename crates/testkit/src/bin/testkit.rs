//! Test helper for the end-to-end fakes: prints a signed BOLT11 invoice as
//! JSON, so fake providers written in JavaScript hand out real invoices.
//!
//! `cargo run -p lightning-fallback-testkit --bin testkit -- invoice <network> <amount_msat> <expiry_secs> [description] [description_hash]`
//! (with a description hash, 64 hex digits, the invoice commits to it instead of the description)
//! `cargo run -p lightning-fallback-testkit --bin testkit -- decode <bolt11>`

use backends::bolt11::{self, Network};
use backends::mock::sign_invoice;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: testkit invoice <network> <amount_msat> <expiry_secs> [description] [description_hash] | testkit decode <bolt11>";
    if args.len() == 2 && args[0] == "decode" {
        match bolt11::parse(&args[1]) {
            Ok(i) => println!(
                "{}",
                serde_json::json!({
                    "payment_hash": i.payment_hash,
                    "amount_msat": i.amount_msat,
                    "network": i.network.map(|n| n.as_str()),
                    "timestamp": i.timestamp_secs,
                    "expires_at": i.expires_at_secs(),
                    "description": i.description,
                    "description_hash": i.description_hash,
                })
            ),
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        }
        return;
    }
    if args.len() < 4 || args[0] != "invoice" {
        eprintln!("{usage}");
        std::process::exit(2);
    }
    let network = Network::parse(&args[1]);
    let amount: Option<u64> = args[2].parse().ok();
    let expiry: Option<u64> = args[3].parse().ok();
    let (Some(network), Some(amount), Some(expiry)) = (network, amount, expiry) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let mut preimage = [0u8; 32];
    if getrandom::getrandom(&mut preimage).is_err() {
        eprintln!("no randomness");
        std::process::exit(1);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let description = args.get(4).map(String::as_str).unwrap_or("e2e");
    let description_hash = args.get(5).map(String::as_str).filter(|h| !h.is_empty());
    match sign_invoice(
        network,
        amount,
        description,
        description_hash,
        expiry,
        now,
        preimage,
    ) {
        Ok(inv) => println!(
            "{}",
            serde_json::json!({
                "payment_request": inv.payment_request,
                "payment_hash": inv.payment_hash,
                "preimage": inv.preimage,
            })
        ),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
