//! A FIFO of waiting requests, each woken by a one-shot message. The owner (the provider pool,
//! a budget ledger) keeps the list under its own mutex and decides, under that lock, who is
//! served next; a waiter learns the decision through its receiver.
//!
//! Cancel safety is the owner's job and is simple because every decision is made under the
//! owner's lock: a waiter that is no longer in the list when it gives up was served (its
//! receiver was alive when the message was sent), so it must hand back what it was given.

use std::collections::VecDeque;
use tokio::sync::oneshot;

/// One waiting request with the owner's data about it.
#[derive(Debug)]
pub struct Waiter<D, T> {
    id: u64,
    pub data: D,
    tx: oneshot::Sender<T>,
}

impl<D, T> Waiter<D, T> {
    /// Delivers the decision; gives it back when the waiter has gone away.
    pub fn send(self, value: T) -> Result<(), T> {
        self.tx.send(value)
    }
}

#[derive(Debug)]
pub struct WaitList<D, T> {
    next_id: u64,
    queue: VecDeque<Waiter<D, T>>,
}

impl<D, T> Default for WaitList<D, T> {
    fn default() -> Self {
        WaitList {
            next_id: 0,
            queue: VecDeque::new(),
        }
    }
}

impl<D, T> WaitList<D, T> {
    /// Appends a waiter; returns its id (for [`WaitList::remove`]) and its receiver.
    pub fn push(&mut self, data: D) -> (u64, oneshot::Receiver<T>) {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let (tx, rx) = oneshot::channel();
        self.queue.push_back(Waiter { id, data, tx });
        (id, rx)
    }

    /// Removes a waiter that gives up; `false` when it is no longer queued (it was served).
    pub fn remove(&mut self, id: u64) -> bool {
        match self.queue.iter().position(|w| w.id == id) {
            Some(index) => {
                self.queue.remove(index);
                true
            }
            None => false,
        }
    }

    pub fn front(&self) -> Option<&Waiter<D, T>> {
        self.queue.front()
    }

    pub fn pop_front(&mut self) -> Option<Waiter<D, T>> {
        self.queue.pop_front()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_order_and_removal() {
        let mut list: WaitList<&str, u8> = WaitList::default();
        let (a, mut ra) = list.push("a");
        let (b, rb) = list.push("b");
        let (_, mut rc) = list.push("c");
        assert!(list.remove(b));
        assert!(!list.remove(b));
        drop(rb);
        assert_eq!(list.front().map(|w| w.data), Some("a"));
        list.pop_front().unwrap().send(1).unwrap();
        assert_eq!(ra.try_recv().unwrap(), 1);
        assert!(!list.remove(a), "a was served");
        drop(ra);
        let c = list.pop_front().unwrap();
        assert_eq!(c.data, "c");
        c.send(3).unwrap();
        assert_eq!(rc.try_recv().unwrap(), 3);
        assert!(list.is_empty());

        // A receiver that is gone gives the value back.
        let (_, rd) = list.push("d");
        drop(rd);
        assert_eq!(list.pop_front().unwrap().send(4), Err(4));
    }
}
