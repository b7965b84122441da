//! Helpers for reading an internally tagged enum (`{"status": "queued",
//! ...}`) through one flat struct of every variant's fields. serde's derive
//! for such an enum buffers the input into a `Content` tree and reads it
//! again per variant: in the wasm that machinery and the second copy of
//! every variant's reader cost tens of KB, and each read allocates per field.
//! A flat struct reads the same JSON in one pass; its tag picks the variant.
//!
//! A flat reader accepts what the derive accepts, except a field of another
//! variant with a value of the wrong type (the derive ignored it). Nothing
//! this project writes has such a field.

use serde::de::Error;
use serde::{Deserialize, Deserializer};

/// A field the variant needs: missing (or null) is serde's "missing field".
pub fn need<T, E: Error>(v: Option<T>, field: &'static str) -> Result<T, E> {
    v.ok_or_else(|| E::missing_field(field))
}

/// `#[serde(default, deserialize_with = "tagged::present")]` on an
/// `Option<T>` whose `T` reads `null` itself (a `serde_json::Value`): a
/// present field is `Some` even when null, as the derive had it.
pub fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// Asserts that each value, written by its `Serialize`, reads back as
/// itself: the round trip every flat reader must keep.
#[cfg(test)]
pub fn assert_reads_back<T>(values: impl IntoIterator<Item = T>)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    for v in values {
        let text = serde_json::to_string(&v).unwrap_or_default();
        assert_eq!(serde_json::from_str::<T>(&text).ok(), Some(v), "{text}");
    }
}
