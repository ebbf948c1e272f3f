//! The workers lent, one trial at a time, to trials that disrupt a whole node
//! (`requires.node: dedicated`: a stopped kubelet, a frozen runtime, a full disk). With
//! as many workers as such trials, none waits for another and the suite's wall time
//! approaches its longest trial.
//!
//! Architecture invariant: a worker is leased to at most one trial at a time, and a
//! lease gives its worker back when dropped, whatever ended the trial (a verdict, an
//! error, a panic unwinding through it).

use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Dedicated workers, lent by [`WorkerPool::lease`].
pub struct WorkerPool {
    /// Every worker of the pool, in name order: what `requires` is checked against
    /// (the workers share one node image, so their facts agree).
    nodes: Vec<String>,
    free: Arc<Mutex<Vec<String>>>,
    permits: Arc<Semaphore>,
}

impl WorkerPool {
    /// A pool of `nodes`; empty when the cluster has no worker to spare.
    pub fn new(mut nodes: Vec<String>) -> WorkerPool {
        nodes.sort();
        // Lent from the back: the first worker by name goes first.
        let free: Vec<String> = nodes.iter().rev().cloned().collect();
        WorkerPool {
            permits: Arc::new(Semaphore::new(nodes.len())),
            free: Arc::new(Mutex::new(free)),
            nodes,
        }
    }

    /// The worker whose facts stand for the pool's; None for an empty pool.
    pub fn first(&self) -> Option<&str> {
        self.nodes.first().map(String::as_str)
    }

    /// A worker of its own for one trial; waits while every worker is lent. None for
    /// an empty pool (it would wait for ever).
    pub async fn lease(&self) -> Option<Lease> {
        if self.nodes.is_empty() {
            return None;
        }
        let permit = self.permits.clone().acquire_owned().await.ok()?;
        let node = self
            .free
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop()?;
        Some(Lease {
            node,
            free: self.free.clone(),
            _permit: permit,
        })
    }
}

/// One worker, lent until dropped.
pub struct Lease {
    node: String,
    free: Arc<Mutex<Vec<String>>>,
    // Dropped after `drop` below has put the node back: a waiter woken by the permit
    // always finds a free node.
    _permit: OwnedSemaphorePermit,
}

impl Lease {
    pub fn node(&self) -> &str {
        &self.node
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.free
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(std::mem::take(&mut self.node));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pool(names: &[&str]) -> WorkerPool {
        WorkerPool::new(names.iter().map(|s| s.to_string()).collect())
    }

    #[tokio::test]
    async fn each_trial_gets_a_worker_of_its_own_while_there_are_some() {
        let p = pool(&["w3", "w2"]);
        let a = p.lease().await.expect("a lease");
        let b = p.lease().await.expect("a lease");
        assert_eq!((a.node(), b.node()), ("w2", "w3"));
        // A third waits until one comes back, and gets that one.
        let third = tokio::time::timeout(Duration::from_millis(50), p.lease()).await;
        assert!(
            third.is_err(),
            "a third trial must wait while both are lent"
        );
        drop(a);
        let c = tokio::time::timeout(Duration::from_secs(1), p.lease())
            .await
            .expect("the returned worker is lent again")
            .expect("a lease");
        assert_eq!(c.node(), "w2");
    }

    #[tokio::test]
    async fn a_panicking_trial_gives_its_worker_back() {
        let p = Arc::new(pool(&["w2"]));
        let q = p.clone();
        let crashed = tokio::spawn(async move {
            let _lease = q.lease().await;
            panic!("the trial broke");
        })
        .await;
        assert!(crashed.is_err());
        let again = tokio::time::timeout(Duration::from_secs(1), p.lease()).await;
        assert_eq!(again.expect("not lost").expect("a lease").node(), "w2");
    }

    #[tokio::test]
    async fn an_empty_pool_lends_nothing_and_does_not_wait() {
        let p = pool(&[]);
        assert!(p.lease().await.is_none());
        assert_eq!(p.first(), None);
    }
}
