//! The invoice claims object's rules. With several queue shards, a
//! payment hash is claimed in one claims object before any payout sends
//! it, so one invoice belongs to one live payout across every shard.

use crate::payout::engine::{Claim, StoreError, CLAIM_COMMIT_MS, CLAIM_SETTLE_MS};

/// A claims row: who holds a hash, and since when (the claims object's clock).
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimRow {
    pub payout_id: String,
    pub claimed_at_ms: u64,
}

/// The claims object's answer to one claim request.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Given to the claimant at `claimed_at_ms` (the claims object's clock).
    Granted { claimed_at_ms: u64 },
    /// Another payout holds the hash; `seen_at_ms` is the claims object's clock
    /// when it said so. A takeover must come back within the commit window
    /// of that reading.
    HeldBy { owner: String, seen_at_ms: u64 },
}

/// A request to take a claim over from `owner`, whose shard was asked
/// after the claims object answered "held by `owner`" at `seen_at_ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct Takeover {
    pub owner: String,
    pub seen_at_ms: u64,
}

/// Gives `hash` to `id` (writing `now_ms`), keeps it with its holder, or
/// hands it over on a [`Takeover`] when all of this holds on the claims object's
/// own clock: the holder is the one named, it has not re-claimed the hash
/// since the "held by" answer, that answer is at most [`CLAIM_COMMIT_MS`]
/// old (so the claimant's read of the holder is too), and the holder's
/// claim has settled (a younger claim may belong to a payout still on its
/// way to its shard).
pub fn decide(
    row: Option<&ClaimRow>,
    id: &str,
    takeover: Option<&Takeover>,
    now_ms: u64,
) -> Answer {
    match row {
        None => Answer::Granted {
            claimed_at_ms: now_ms,
        },
        Some(r) if r.payout_id == id => Answer::Granted {
            claimed_at_ms: now_ms,
        },
        Some(r)
            if takeover.is_some_and(|t| {
                t.owner == r.payout_id
                    && r.claimed_at_ms <= t.seen_at_ms
                    && now_ms.saturating_sub(t.seen_at_ms) <= CLAIM_COMMIT_MS
                    && t.seen_at_ms <= now_ms
            }) && now_ms.saturating_sub(r.claimed_at_ms) >= CLAIM_SETTLE_MS =>
        {
            Answer::Granted {
                claimed_at_ms: now_ms,
            }
        }
        Some(r) => Answer::HeldBy {
            owner: r.payout_id.clone(),
            seen_at_ms: now_ms,
        },
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

/// How a queue shard reaches the claims object and the other shards.
/// Every call is bounded in time by the caller's transport.
#[allow(async_fn_in_trait)] // Wasm is single-threaded: no `Send` bound is wanted.
pub trait ClaimsLink {
    /// Asks the claims object to [`decide`] on `hash` for `id`.
    async fn claim(
        &self,
        hash: &str,
        id: &str,
        takeover: Option<&Takeover>,
    ) -> Result<Answer, StoreError>;
    /// The holder as its own shard records it. Only a definite answer may
    /// be `Absent`: a failed call is an error.
    async fn holder(&self, owner: &str) -> Result<Holder, StoreError>;
    /// Gives up `id`'s claim on `hash` granted at `claimed_at_ms`, if the
    /// row is still that grant (a claimant whose grant came too late, so
    /// nothing was stored; a later claim by the same payout is kept).
    async fn release(&self, hash: &str, id: &str, claimed_at_ms: u64) -> Result<(), StoreError>;
}

/// Claims `hash` for `id`. When another payout holds it, its shard is asked
/// whether it still does, and only then is the claim taken over (the
/// claims object decides whether the answer is still fresh and settled).
pub async fn claim<L: ClaimsLink>(link: &L, hash: &str, id: &str) -> Result<Claim, StoreError> {
    let mut takeover: Option<Takeover> = None;
    for _ in 0..3 {
        let (owner, seen_at_ms) = match link.claim(hash, id, takeover.as_ref()).await? {
            Answer::Granted { claimed_at_ms } => {
                return Ok(Claim::Granted {
                    at_ms: claimed_at_ms,
                })
            }
            Answer::HeldBy { owner, seen_at_ms } => (owner, seen_at_ms),
        };
        // Refused although the holder was found not to hold it: its claim
        // has not settled yet, or the answer came too late.
        if takeover.as_ref().is_some_and(|t| t.owner == owner)
            || !holder_frees(&link.holder(&owner).await?, hash)
        {
            return Ok(Claim::HeldBy(owner));
        }
        takeover = Some(Takeover { owner, seen_at_ms });
    }
    Err(StoreError(
        "invoice claims object: the holder kept changing; try again".into(),
    ))
}

/// How the claims object reaches the queue shards.
#[allow(async_fn_in_trait)]
pub trait ShardPeers {
    /// `(payment hash, payout id)` of every live payout of `shard`.
    async fn live_hashes(&self, shard: u32) -> Result<Vec<(String, String)>, StoreError>;
}

/// Before its first decision the claims object records the live hashes of
/// every shard, so that payouts stored before shards claimed through it
/// (an upgrade from one shard) hold their invoices too. Any shard that does
/// not answer fails the whole gathering: no claim is decided until every
/// shard has answered.
pub async fn gather_live_hashes<P: ShardPeers>(
    peers: &P,
    shards: u32,
) -> Result<Vec<(String, String)>, StoreError> {
    let mut pairs = Vec::new();
    for shard in 0..shards.max(1) {
        pairs.extend(peers.live_hashes(shard).await?);
    }
    Ok(pairs)
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

    fn held(owner: &str, at: u64) -> Answer {
        Answer::HeldBy {
            owner: owner.into(),
            seen_at_ms: at,
        }
    }

    fn granted(at: u64) -> Answer {
        Answer::Granted { claimed_at_ms: at }
    }

    fn takeover(owner: &str, seen_at_ms: u64) -> Takeover {
        Takeover {
            owner: owner.into(),
            seen_at_ms,
        }
    }

    #[test]
    fn a_claim_is_kept_by_its_holder_and_refreshed() {
        assert_eq!(decide(None, "a", None, 5), granted(5));
        assert_eq!(decide(Some(&row("a", 0)), "a", None, 5), granted(5));
        let t = CLAIM_SETTLE_MS * 10;
        assert_eq!(decide(Some(&row("a", 0)), "b", None, t), held("a", t));
    }

    #[test]
    fn only_a_settled_claim_of_the_named_holder_is_taken_over() {
        let young = row("a", 1_000);
        let t = 1_000 + CLAIM_SETTLE_MS - 1;
        assert_eq!(
            decide(Some(&young), "b", Some(&takeover("a", t)), t),
            held("a", t),
            "a claim whose payout may still be on its way is never taken"
        );
        let t = 1_000 + CLAIM_SETTLE_MS;
        assert_eq!(
            decide(Some(&young), "b", Some(&takeover("a", t)), t),
            granted(t)
        );
        let t = CLAIM_SETTLE_MS * 2;
        assert_eq!(
            decide(Some(&row("c", 0)), "b", Some(&takeover("a", t)), t),
            held("c", t),
            "the holder changed since it was checked"
        );
    }

    #[test]
    fn a_takeover_is_granted_only_within_the_commit_window_of_its_reading() {
        let old = row("a", 0);
        let seen = CLAIM_SETTLE_MS * 2;
        assert_eq!(
            decide(
                Some(&old),
                "b",
                Some(&takeover("a", seen)),
                seen + CLAIM_COMMIT_MS
            ),
            granted(seen + CLAIM_COMMIT_MS)
        );
        let late = seen + CLAIM_COMMIT_MS + 1;
        assert_eq!(
            decide(Some(&old), "b", Some(&takeover("a", seen)), late),
            held("a", late),
            "the holder read may be stale by now"
        );
        // The holder re-claimed the hash after the reading (an admin retry).
        let reclaimed = row("a", seen + 1);
        let t = seen + CLAIM_SETTLE_MS + 10;
        assert_eq!(
            decide(Some(&reclaimed), "b", Some(&takeover("a", seen)), t),
            held("a", t)
        );
        // A reading from the future of the claims object's clock is refused.
        assert_eq!(
            decide(Some(&old), "b", Some(&takeover("a", seen + 5)), seen),
            held("a", seen)
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

    struct Peers(Vec<Option<Vec<(String, String)>>>);

    impl ShardPeers for Peers {
        async fn live_hashes(&self, shard: u32) -> Result<Vec<(String, String)>, StoreError> {
            self.0[shard as usize]
                .clone()
                .ok_or_else(|| StoreError(format!("shard {shard} did not answer")))
        }
    }

    #[test]
    fn the_backfill_covers_every_shard_or_fails() {
        let pair = |h: &str, id: &str| (h.to_string(), id.to_string());
        let all = Peers(vec![
            Some(vec![pair("a", "po_1")]),
            Some(vec![]),
            Some(vec![pair("b", "po_2"), pair("c", "po_3")]),
        ]);
        let got = futures_executor::block_on(gather_live_hashes(&all, 3)).unwrap();
        assert_eq!(got.len(), 3);
        let one_silent = Peers(vec![Some(vec![pair("a", "po_1")]), None, Some(vec![])]);
        assert!(futures_executor::block_on(gather_live_hashes(&one_silent, 3)).is_err());
    }
}
