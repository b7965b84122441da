//! What a payment and a status lookup came to, as a backend's adapter
//! reads its answer. The payout engine decides what each means for a
//! payout; an adapter only says what its backend said.

/// How a pay request ended, as the backend adapter classified it.
#[derive(Debug, Clone, PartialEq)]
pub enum PayOutcome {
    Succeeded {
        preimage: Option<String>,
        fee_msat: Option<u64>,
    },
    /// The backend said explicitly that this payment failed.
    Failed(String),
    /// The backend refused because the invoice is already paid: by this
    /// payout's earlier send, or by anyone. The hash may be paid, for good.
    AlreadyPaid(String),
    /// The backend refused before acting (credentials, rate limit).
    NotSent(String),
    /// It may or may not have paid.
    Unknown(String),
}

/// What a status lookup of the payment hash said.
#[derive(Debug, Clone, PartialEq)]
pub enum LookupOutcome {
    Paid {
        preimage: Option<String>,
        fee_msat: Option<u64>,
    },
    /// The backend's record of a send of this hash says it failed.
    Failed(FailedRecord),
    /// Still in flight.
    Pending,
    /// The backend has no payment with this hash.
    NotFound,
    /// The lookup itself failed; nothing is known.
    Error(String),
}

impl LookupOutcome {
    /// A "failed" answer (tests and adapters).
    pub fn failed(reason: impl Into<String>, covers: Covers, created_at_ms: Option<u64>) -> Self {
        LookupOutcome::Failed(FailedRecord {
            reason: reason.into(),
            covers,
            created_at_ms,
            may_still_settle: false,
            resendable: true,
        })
    }
}

/// A lookup's "failed", with what it takes to tell which send it describes.
/// A wallet that keeps one record per attempt may answer with an older
/// attempt than the last send, and one that holds requests may create a
/// record late: "failed" proves the hash unpaid only for the send it is
/// known to describe.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedRecord {
    pub reason: String,
    pub covers: Covers,
    /// When the backend created the record, on its own clock, if it says.
    pub created_at_ms: Option<u64>,
    /// The backend writes "failed" while parts of the payment may still be
    /// in flight (a wallet that marks a payment failed when its own call to
    /// its node errors, and settled if the node later reports it sent). Such
    /// a "failed" proves nothing until no part can still be in flight
    /// ([`PayoutPolicy::in_flight_bound_ms`]).
    pub may_still_settle: bool,
    /// Sending the same hash again can pay it. LNbits refuses a hash that
    /// failed for good ("retrying is not possible"), so there it cannot.
    pub resendable: bool,
}

/// What one lookup answer covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Covers {
    /// Every send of the hash: one record per hash that each send resets
    /// or updates, or every attempt listed and combined.
    EveryAttempt,
    /// One attempt among possibly several, which one unsaid (NIP-47 wallets
    /// keep a record per attempt and pick one).
    OneAttempt,
}
