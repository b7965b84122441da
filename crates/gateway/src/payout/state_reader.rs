//! Reads a stored [`PayoutState`] through one flat struct ([`crate::tagged`]),
//! checked against serde's own derive of the same shape below.

use serde::{Deserialize, Deserializer};

use crate::payout::model::{PayoutState, SentBefore};
use crate::tagged::need;

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Status {
    Queued,
    Sending,
    Unknown,
    Succeeded,
    Failed,
}

/// Every variant's fields; which of them must be there depends on `status`.
#[derive(Deserialize)]
struct Flat {
    status: Status,
    next_at_ms: Option<u64>,
    verify_first: Option<bool>,
    since_ms: Option<u64>,
    instance: Option<String>,
    before: Option<SentBefore>,
    next_check_ms: Option<u64>,
    at_ms: Option<u64>,
    reason: Option<String>,
}

impl<'de> Deserialize<'de> for PayoutState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let f = Flat::deserialize(d)?;
        Ok(match f.status {
            Status::Queued => PayoutState::Queued {
                next_at_ms: need(f.next_at_ms, "next_at_ms")?,
                verify_first: need(f.verify_first, "verify_first")?,
            },
            Status::Sending => PayoutState::Sending {
                since_ms: need(f.since_ms, "since_ms")?,
                instance: f.instance,
                before: f.before,
            },
            Status::Unknown => PayoutState::Unknown {
                since_ms: need(f.since_ms, "since_ms")?,
                next_check_ms: need(f.next_check_ms, "next_check_ms")?,
            },
            Status::Succeeded => PayoutState::Succeeded {
                at_ms: need(f.at_ms, "at_ms")?,
            },
            Status::Failed => PayoutState::Failed {
                at_ms: need(f.at_ms, "at_ms")?,
                reason: need(f.reason, "reason")?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Map, Value};

    /// serde's own reader of the same shape: the oracle.
    #[derive(Deserialize)]
    #[serde(tag = "status", rename_all = "snake_case")]
    enum Derived {
        Queued {
            next_at_ms: u64,
            verify_first: bool,
        },
        Sending {
            since_ms: u64,
            #[serde(default)]
            instance: Option<String>,
            #[serde(default)]
            before: Option<SentBefore>,
        },
        Unknown {
            since_ms: u64,
            next_check_ms: u64,
        },
        Succeeded {
            at_ms: u64,
        },
        Failed {
            at_ms: u64,
            reason: String,
        },
    }

    impl From<Derived> for PayoutState {
        fn from(d: Derived) -> PayoutState {
            match d {
                Derived::Queued {
                    next_at_ms,
                    verify_first,
                } => PayoutState::Queued {
                    next_at_ms,
                    verify_first,
                },
                Derived::Sending {
                    since_ms,
                    instance,
                    before,
                } => PayoutState::Sending {
                    since_ms,
                    instance,
                    before,
                },
                Derived::Unknown {
                    since_ms,
                    next_check_ms,
                } => PayoutState::Unknown {
                    since_ms,
                    next_check_ms,
                },
                Derived::Succeeded { at_ms } => PayoutState::Succeeded { at_ms },
                Derived::Failed { at_ms, reason } => PayoutState::Failed { at_ms, reason },
            }
        }
    }

    /// Each field, its type, and the variants it belongs to.
    const FIELDS: [(&str, &str, &[&str]); 8] = [
        ("next_at_ms", "u64", &["queued"]),
        ("verify_first", "bool", &["queued"]),
        ("since_ms", "u64", &["sending", "unknown"]),
        ("instance", "str", &["sending"]),
        ("before", "before", &["sending"]),
        ("next_check_ms", "u64", &["unknown"]),
        ("at_ms", "u64", &["succeeded", "failed"]),
        ("reason", "str", &["failed"]),
    ];

    fn any_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<u64>().prop_map(|n| json!(n)),
            Just(json!(-1)),
            Just(json!(1.5)),
            "[a-z]{0,3}".prop_map(Value::String),
            Just(json!({"last_sent_at_ms": 5, "hash_first_sent_at_ms": null})),
            Just(json!({"last_sent_at_ms": "x"})),
            Just(json!([])),
        ]
    }

    /// A value of the field's own type.
    fn typed(kind: &str) -> BoxedStrategy<Value> {
        match kind {
            "u64" => any::<u64>().prop_map(|n| json!(n)).boxed(),
            "bool" => any::<bool>().prop_map(Value::Bool).boxed(),
            "str" => "[a-z ]{0,5}".prop_map(Value::String).boxed(),
            _ => (
                prop::option::of(any::<u64>()),
                prop::option::of(any::<u64>()),
            )
                .prop_map(|(a, b)| json!({"last_sent_at_ms": a, "hash_first_sent_at_ms": b}))
                .boxed(),
        }
    }

    /// Mostly well-typed, sometimes absent or of any type.
    fn field(kind: &'static str) -> BoxedStrategy<Option<Value>> {
        prop_oneof![
            2 => typed(kind).prop_map(Some),
            1 => Just(None),
            1 => any_value().prop_map(Some),
        ]
        .boxed()
    }

    fn any_status() -> impl Strategy<Value = Option<Value>> {
        prop_oneof![
            1 => Just(None),
            1 => Just(Some(json!(1))),
            1 => Just(Some(json!("paid"))),
            6 => prop::sample::select(vec!["queued", "sending", "unknown", "succeeded", "failed"])
                .prop_map(|s| Some(json!(s))),
        ]
    }

    fn any_object() -> impl Strategy<Value = Value> {
        let fields: Vec<_> = FIELDS.iter().map(|(_, kind, _)| field(kind)).collect();
        (any_status(), fields, prop::option::of(any_value())).prop_map(|(status, values, extra)| {
            let mut m = Map::new();
            if let Some(s) = status {
                m.insert("status".into(), s);
            }
            for ((name, _, _), v) in FIELDS.iter().zip(values) {
                if let Some(v) = v {
                    m.insert((*name).into(), v);
                }
            }
            if let Some(v) = extra {
                m.insert("unrelated".into(), v);
            }
            Value::Object(m)
        })
    }

    /// Whether `v` is a value the flat struct reads for a field of `kind`
    /// (every flat field is optional, so null always is).
    fn well_typed(kind: &str, v: &Value) -> bool {
        match kind {
            _ if v.is_null() => true,
            "u64" => v.is_u64(),
            "bool" => v.is_boolean(),
            "str" => v.is_string(),
            _ => serde_json::from_value::<SentBefore>(v.clone()).is_ok(),
        }
    }

    /// Whether every field present that belongs to no variant of this
    /// status has a value of its own type (the one input where the two
    /// readers may differ is a foreign field of the wrong type).
    fn foreign_fields_well_typed(v: &Value) -> bool {
        let status = v.get("status").and_then(Value::as_str).unwrap_or("");
        FIELDS.iter().all(|(name, kind, of)| {
            of.contains(&status) || v.get(*name).is_none_or(|f| well_typed(kind, f))
        })
    }

    fn any_state() -> impl Strategy<Value = PayoutState> {
        let before = prop::option::of(
            (
                prop::option::of(any::<u64>()),
                prop::option::of(any::<u64>()),
            )
                .prop_map(|(last_sent_at_ms, hash_first_sent_at_ms)| SentBefore {
                    last_sent_at_ms,
                    hash_first_sent_at_ms,
                }),
        );
        prop_oneof![
            (any::<u64>(), any::<bool>()).prop_map(|(next_at_ms, verify_first)| {
                PayoutState::Queued {
                    next_at_ms,
                    verify_first,
                }
            }),
            (any::<u64>(), prop::option::of("[a-z0-9-]{0,8}"), before).prop_map(
                |(since_ms, instance, before)| PayoutState::Sending {
                    since_ms,
                    instance,
                    before,
                }
            ),
            (any::<u64>(), any::<u64>()).prop_map(|(since_ms, next_check_ms)| {
                PayoutState::Unknown {
                    since_ms,
                    next_check_ms,
                }
            }),
            any::<u64>().prop_map(|at_ms| PayoutState::Succeeded { at_ms }),
            (any::<u64>(), ".{0,12}")
                .prop_map(|(at_ms, reason)| PayoutState::Failed { at_ms, reason }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Whatever this reader accepts, the derive accepts as the same
        /// state; whatever the derive accepts without a foreign field of
        /// the wrong type, this reader accepts too. From text and from a
        /// `Value` alike.
        #[test]
        fn agrees_with_serdes_derive(v in any_object()) {
            let text = v.to_string();
            let ours = serde_json::from_str::<PayoutState>(&text).ok();
            let derived = serde_json::from_str::<Derived>(&text).ok().map(PayoutState::from);
            if let Some(o) = &ours {
                prop_assert_eq!(Some(o), derived.as_ref());
            }
            if foreign_fields_well_typed(&v) {
                prop_assert_eq!(&ours, &derived);
            }
            prop_assert_eq!(serde_json::from_value::<PayoutState>(v).ok(), ours);
        }

        /// Every state the queue writes (model.rs's own `Serialize`) reads
        /// back as itself.
        #[test]
        fn every_written_state_reads_back(state in any_state()) {
            let text = serde_json::to_string(&state).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(serde_json::from_str::<PayoutState>(&text).ok(), Some(state));
        }
    }

    /// The generator reaches accepted states of every kind, not only
    /// refusals (the property above would be empty otherwise).
    #[test]
    fn the_generator_reaches_every_state() {
        use proptest::strategy::ValueTree;
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let strategy = any_object();
        let mut seen = std::collections::BTreeMap::new();
        for _ in 0..4000 {
            let v = strategy.new_tree(&mut runner).unwrap().current();
            if let Ok(s) = serde_json::from_value::<PayoutState>(v) {
                *seen.entry(s.name()).or_insert(0) += 1;
            }
        }
        assert_eq!(seen.len(), 5, "{seen:?}");
        assert!(seen.values().all(|n| *n >= 20), "{seen:?}");
    }

    #[test]
    fn every_state_round_trips() {
        let states = [
            PayoutState::Queued {
                next_at_ms: 1,
                verify_first: true,
            },
            PayoutState::Sending {
                since_ms: 2,
                instance: None,
                before: None,
            },
            PayoutState::Sending {
                since_ms: 2,
                instance: Some("i1".into()),
                before: Some(SentBefore {
                    last_sent_at_ms: Some(3),
                    hash_first_sent_at_ms: None,
                }),
            },
            PayoutState::Unknown {
                since_ms: 4,
                next_check_ms: 5,
            },
            PayoutState::Succeeded { at_ms: 6 },
            PayoutState::Failed {
                at_ms: 7,
                reason: "no route".into(),
            },
        ];
        crate::tagged::assert_reads_back(states);
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let err = |v: Value| {
            serde_json::from_value::<PayoutState>(v)
                .unwrap_err()
                .to_string()
        };
        assert!(err(json!({"next_at_ms": 1})).contains("missing field `status`"));
        assert!(err(json!({"status": "paid"})).contains("unknown variant `paid`"));
        assert!(err(json!({"status": "failed", "at_ms": 1})).contains("missing field `reason`"));
    }
}
