//! Runs a few futures at once and collects their outputs in order, like
//! `futures_util::future::join_all`. That one switches to `FuturesOrdered`
//! (a task queue, a binary heap and their wakers) past 30 futures, and the
//! wasm carried that machinery for each of its ten callers' future types;
//! this polls every unfinished future on each wake, which is what
//! `join_all` does below 30 anyway. For the shards (at most 64), backends,
//! relays or watch lookups asked at once: quadratic polling at 64 is a few
//! thousand polls of pending futures.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;

/// Every future's output, in the order given, once all have finished.
pub async fn join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut running: Vec<Option<Pin<Box<F>>>> =
        futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut outputs: Vec<Option<F::Output>> = running.iter().map(|_| None).collect();
    poll_fn(|cx| {
        let mut pending = false;
        for (slot, out) in running.iter_mut().zip(outputs.iter_mut()) {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => {
                        *out = Some(v);
                        *slot = None;
                    }
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    // Ready only once no future is left running, so every slot holds its
    // output: nothing is dropped here, and callers may pair outputs with
    // their inputs by position.
    debug_assert!(outputs.iter().all(Option::is_some));
    outputs.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_executor::block_on;
    use std::cell::Cell;

    /// Ready after `n` polls, waking itself each time.
    async fn after_polls(n: u32, value: u32, log: &Cell<Vec<u32>>) -> u32 {
        let mut left = n;
        poll_fn(|cx| {
            if left == 0 {
                let mut l = log.take();
                l.push(value);
                log.set(l);
                Poll::Ready(())
            } else {
                left -= 1;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        })
        .await;
        value
    }

    #[test]
    fn outputs_come_in_the_order_given_whatever_order_they_finish_in() {
        let log = Cell::new(Vec::new());
        let got = block_on(join_all(
            [(3, 1), (0, 2), (5, 3), (1, 4)].map(|(n, v)| after_polls(n, v, &log)),
        ));
        assert_eq!(got, vec![1, 2, 3, 4]);
        assert_eq!(log.take(), vec![2, 4, 1, 3]);
    }

    /// A finished future is never polled again (polling a finished
    /// `async` block panics), whatever the others still do.
    #[test]
    fn a_finished_future_is_not_polled_again() {
        let log = Cell::new(Vec::new());
        let early = async { 7u32 };
        let got = block_on(join_all([
            Box::pin(early) as std::pin::Pin<Box<dyn Future<Output = u32>>>,
            Box::pin(after_polls(4, 8, &log)),
        ]));
        assert_eq!(got, vec![7, 8]);
    }

    #[test]
    fn nothing_to_join_is_an_empty_list() {
        let none: Vec<std::future::Ready<u8>> = Vec::new();
        assert!(block_on(join_all(none)).is_empty());
    }
}
