//! The cross-shard invoice registry's rules. With several queue shards, a
//! payment hash is claimed in one registry object before any payout sends
//! it, so one invoice belongs to one live payout across every shard.

use crate::core::payout::engine::{Claim, StoreError, CLAIM_SETTLE_MS};

/// A registry row: who holds a hash, and since when (the registry's clock).
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimRow {
    pub payout_id: String,
    pub claimed_at_ms: u64,
}

/// Gives `hash` to `id` (writing `now_ms`), keeps it with its holder, or
/// hands it over when `replace` names the holder, the holder was found not
/// to hold the hash, and its claim has settled: a younger claim may belong
/// to a payout still on its way to its shard.
pub fn decide(row: Option<&ClaimRow>, id: &str, replace: Option<&str>, now_ms: u64) -> Claim {
    match row {
        None => Claim::Granted,
        Some(r) if r.payout_id == id => Claim::Granted,
        Some(r)
            if replace == Some(r.payout_id.as_str())
                && now_ms.saturating_sub(r.claimed_at_ms) >= CLAIM_SETTLE_MS =>
        {
            Claim::Granted
        }
        Some(r) => Claim::HeldBy(r.payout_id.clone()),
    }
}

/// What the holder's shard says about the holder.
#[derive(Debug, Clone, PartialEq)]
pub enum Holder {
    /// The shard definitely has no such payout.
    Absent,
    Found {
        failed: bool,
        payment_hash: String,
    },
}

/// Whether the holder no longer holds `hash`: it was never stored, it
/// failed (a payout fails only when none of its hashes can pay), or it
/// sends another hash (its claim was left behind, or it moved on after
/// the old hash was proven dead). Anything unsure is not an answer here.
pub fn holder_frees(holder: &Holder, hash: &str) -> bool {
    match holder {
        Holder::Absent => true,
        Holder::Found {
            failed,
            payment_hash,
        } => *failed || payment_hash != hash,
    }
}

/// How a queue shard reaches the registry object and the other shards.
#[allow(async_fn_in_trait)] // Wasm is single-threaded: no `Send` bound is wanted.
pub trait RegistryLink {
    /// Asks the registry object to [`decide`] on `hash` for `id`.
    async fn claim(&self, hash: &str, id: &str, replace: Option<&str>)
        -> Result<Claim, StoreError>;
    /// The holder as its own shard records it. Only a definite answer may
    /// be `Absent`: a failed call is an error.
    async fn holder(&self, owner: &str) -> Result<Holder, StoreError>;
}

/// Claims `hash` for `id`. When another payout holds it, its shard is asked
/// whether it still does, and only then is the claim taken over (once the
/// holder's claim has settled: the registry decides that).
pub async fn claim<L: RegistryLink>(link: &L, hash: &str, id: &str) -> Result<Claim, StoreError> {
    let mut replace: Option<String> = None;
    for _ in 0..3 {
        let owner = match link.claim(hash, id, replace.as_deref()).await? {
            Claim::Granted => return Ok(Claim::Granted),
            Claim::HeldBy(owner) => owner,
        };
        // Refused although the holder was found not to hold it: its claim
        // has not settled yet.
        if replace.as_deref() == Some(owner.as_str())
            || !holder_frees(&link.holder(&owner).await?, hash)
        {
            return Ok(Claim::HeldBy(owner));
        }
        replace = Some(owner);
    }
    Err(StoreError(
        "invoice registry: the holder kept changing; try again".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, at: u64) -> ClaimRow {
        ClaimRow {
            payout_id: id.into(),
            claimed_at_ms: at,
        }
    }

    #[test]
    fn a_claim_is_kept_by_its_holder_and_refreshed() {
        assert_eq!(decide(None, "a", None, 5), Claim::Granted);
        assert_eq!(decide(Some(&row("a", 0)), "a", None, 5), Claim::Granted);
        assert_eq!(
            decide(Some(&row("a", 0)), "b", None, CLAIM_SETTLE_MS * 10),
            Claim::HeldBy("a".into())
        );
    }

    #[test]
    fn only_a_settled_claim_of_the_named_holder_is_taken_over() {
        let young = row("a", 1_000);
        assert_eq!(
            decide(Some(&young), "b", Some("a"), 1_000 + CLAIM_SETTLE_MS - 1),
            Claim::HeldBy("a".into()),
            "a claim whose payout may still be on its way is never taken"
        );
        assert_eq!(
            decide(Some(&young), "b", Some("a"), 1_000 + CLAIM_SETTLE_MS),
            Claim::Granted
        );
        assert_eq!(
            decide(Some(&row("c", 0)), "b", Some("a"), CLAIM_SETTLE_MS * 2),
            Claim::HeldBy("c".into()),
            "the holder changed since it was checked"
        );
    }

    #[test]
    fn a_holder_frees_a_hash_only_when_it_cannot_send_it() {
        let h = "ab".repeat(32);
        assert!(holder_frees(&Holder::Absent, &h));
        let live = Holder::Found {
            failed: false,
            payment_hash: h.clone(),
        };
        assert!(!holder_frees(&live, &h));
        let failed = Holder::Found {
            failed: true,
            payment_hash: h.clone(),
        };
        assert!(holder_frees(&failed, &h));
        let other = Holder::Found {
            failed: false,
            payment_hash: "cd".repeat(32),
        };
        assert!(holder_frees(&other, &h));
    }
}
