//! A stable insertion sort for the short lists the gateway orders (a
//! request's attempts, a health window, a few known payments). `slice::sort`
//! brings its whole driftsort and quicksort machinery into the wasm for each
//! element type, about 3 KB apiece; this is a few hundred bytes. Quadratic:
//! only for lists whose length is bounded by the configuration or by a cap
//! (the redactor's cuts are bounded by the capped fields it walks: provider
//! details 200 characters, ids 64, idempotency keys 255).

/// Sorts `v` by `key`, keeping equal items in their order (as
/// `slice::sort_by_key` does).
pub fn sort_by_key<T, K: Ord>(v: &mut [T], mut key: impl FnMut(&T) -> K) {
    for i in 1..v.len() {
        let mut j = i;
        while j > 0 && key(&v[j - 1]) > key(&v[j]) {
            v.swap(j - 1, j);
            j -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The same order as the standard library's stable sort, equal
        /// keys included.
        #[test]
        fn sorts_like_the_standard_stable_sort(v in prop::collection::vec((0u8..8, any::<u32>()), 0..80)) {
            let mut ours = v.clone();
            let mut std = v;
            sort_by_key(&mut ours, |(k, _)| *k);
            std.sort_by_key(|(k, _)| *k);
            prop_assert_eq!(ours, std);
        }

        /// Newest first, as the known-payment candidates are ordered.
        #[test]
        fn sorts_like_the_standard_stable_sort_in_reverse(v in prop::collection::vec((0u8..8, any::<u32>()), 0..80)) {
            let mut ours = v.clone();
            let mut std = v;
            sort_by_key(&mut ours, |(k, _)| std::cmp::Reverse(*k));
            std.sort_by_key(|(k, _)| std::cmp::Reverse(*k));
            prop_assert_eq!(ours, std);
        }
    }
}
