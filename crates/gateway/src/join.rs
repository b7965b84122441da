//! Runs a few futures at once and collects their outputs in order, like
//! `futures_util::future::join_all`. That one switches to `FuturesOrdered`
//! (a task queue, a binary heap and their wakers) past 30 futures, and the
//! wasm carried that machinery for each of its ten callers' future types;
//! this polls every unfinished future on each wake, which is what
//! `join_all` does below 30 anyway. For the handful of shards, backends or
//! relays asked at once.

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

    #[test]
    fn nothing_to_join_is_an_empty_list() {
        let none: Vec<std::future::Ready<u8>> = Vec::new();
        assert!(block_on(join_all(none)).is_empty());
    }
}
