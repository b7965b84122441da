//! A Lightning Address served by the gateway (LUD-16 over LUD-06, with
//! LUD-12 comments and LUD-21 verify): `name@<gateway host>` pays through
//! the failover chain, and each invoice is watched like any other. With
//! `NOSTR_ZAP_SECRET` every address takes zaps (NIP-57).

pub mod lnurl;
pub mod settings;
pub mod zap;
pub mod zap_key;
