//! The one worker loop of the store's leased queues (the job queue and the
//! write-back outbox): poll when idle, stop on shutdown (after the row in
//! progress is finished and recorded), log errors, and renew a claimed
//! row's lease on a timer of its own beside the work.
//!
//! Claiming, the lease and retry-at live in the store's leased-queue
//! mechanism; the retry delays in [`crate::backoff`].

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

/// A worker of one leased queue.
pub trait QueueWorker: Send {
    /// What went wrong taking or working a row.
    type Error: Display + Send;

    /// The worker's name in logs.
    fn name(&self) -> &'static str;

    /// Claims the next due row and works it to its outcome; whether there
    /// was one.
    fn work_next(&mut self) -> impl Future<Output = Result<bool, Self::Error>> + Send;

    /// Called after [`QueueWorker::work_next`] failed, before the next
    /// poll (e.g. to drop a connection that may be broken).
    fn after_error(&mut self) {}
}

/// Runs `worker` until `shutdown` resolves: a row in progress is finished
/// (and its outcome recorded) first; when nothing is due, or after an
/// error, it looks again every `idle_poll`.
pub async fn run<W: QueueWorker>(
    mut worker: W,
    idle_poll: Duration,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let idle = match worker.work_next().await {
            Ok(worked) => !worked,
            Err(error) => {
                tracing::error!(%error, "{}", worker.name());
                worker.after_error();
                true
            }
        };
        if idle {
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(idle_poll) => {}
            }
        } else if futures::FutureExt::now_or_never(&mut shutdown).is_some() {
            return;
        }
    }
}

/// Runs `work` while renewing its row's lease every `every` with `renew`,
/// on a timer of its own. The renewal is a future beside the work, polled
/// with it, never instead of it: a renewal that waits on the work (its
/// UPDATE blocked on the row lock of a transaction the work has open) must
/// not stop the work from finishing that transaction. (Awaiting the
/// renewal inside a `select!` arm did exactly that: on PostgreSQL, which
/// waits for a row lock without limit, a write-back hung for good.) A
/// failed renewal is logged (the row's outcome is still recorded, or
/// refused as `LeaseLost`, at the end).
pub async fn holding_lease<T, E, R>(
    what: &'static str,
    id: i64,
    every: Duration,
    work: impl Future<Output = T>,
    renew: impl FnMut() -> R,
) -> T
where
    E: Display,
    R: Future<Output = Result<(), E>>,
{
    tokio::pin!(work);
    let renewing = renew_forever(what, id, every, renew);
    tokio::pin!(renewing);
    tokio::select! {
        biased;
        result = &mut work => result,
        never = &mut renewing => match never {},
    }
}

/// Renews every `every` (the first tick is skipped: the lease was just
/// taken) until dropped.
async fn renew_forever<E, R>(
    what: &'static str,
    id: i64,
    every: Duration,
    mut renew: impl FnMut() -> R,
) -> std::convert::Infallible
where
    E: Display,
    R: Future<Output = Result<(), E>>,
{
    let mut beat = tokio::time::interval(every);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    beat.tick().await;
    loop {
        beat.tick().await;
        if let Err(error) = renew().await {
            tracing::warn!(what, id, %error, "could not extend the lease");
        }
    }
}

/// How often a lease of `lease` is renewed: four times per lease, so a
/// renewal or two can be late without losing it.
pub fn renewal_interval(lease: Duration) -> Duration {
    (lease / 4).max(Duration::from_millis(100))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Seen on PostgreSQL: the work held its row's lock inside a
    /// transaction when a renewal fell due; the renewal's UPDATE waited for
    /// that lock while the work was no longer polled, and the write-back
    /// never finished. Here a mutex stands for the row lock.
    #[tokio::test(start_paused = true)]
    async fn a_renewal_waiting_on_the_work_does_not_stop_the_work() {
        let row = Arc::new(tokio::sync::Mutex::new(()));
        let held = row.clone();
        let work = async move {
            let _transaction = held.lock().await;
            // Inside the transaction past two renewal ticks.
            tokio::time::sleep(Duration::from_millis(2_500)).await;
            42
        };
        let counted = Arc::new(AtomicU32::new(0));
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            holding_lease("test", 1, Duration::from_secs(1), work, move || {
                let (row, counted) = (row.clone(), counted.clone());
                async move {
                    let _update = row.lock().await;
                    counted.fetch_add(1, Ordering::SeqCst);
                    Ok::<(), String>(())
                }
            }),
        )
        .await;
        assert_eq!(
            out,
            Ok(42),
            "the work finished while a renewal waited on it"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_lease_is_renewed_while_the_work_runs_and_no_longer() {
        let renewals = Arc::new(AtomicU32::new(0));
        let counted = renewals.clone();
        let out = holding_lease(
            "test",
            1,
            Duration::from_secs(10),
            async {
                tokio::time::sleep(Duration::from_secs(35)).await;
                7
            },
            || {
                let counted = counted.clone();
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    Err::<(), _>("lost")
                }
            },
        )
        .await;
        assert_eq!(out, 7, "the work's result");
        assert_eq!(renewals.load(Ordering::SeqCst), 3, "at 10, 20 and 30 s");
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(renewals.load(Ordering::SeqCst), 3, "none after the work");
    }

    struct Counting {
        due: u32,
        worked: Arc<AtomicU32>,
        errors: u32,
    }

    impl QueueWorker for Counting {
        type Error = String;
        fn name(&self) -> &'static str {
            "test worker"
        }
        async fn work_next(&mut self) -> Result<bool, String> {
            if self.errors > 0 {
                self.errors -= 1;
                return Err("broken".into());
            }
            if self.due == 0 {
                return Ok(false);
            }
            self.due -= 1;
            self.worked.fetch_add(1, Ordering::SeqCst);
            Ok(true)
        }
        fn after_error(&mut self) {
            self.worked.fetch_add(100, Ordering::SeqCst);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_loop_works_every_due_row_and_stops_on_shutdown() {
        let worked = Arc::new(AtomicU32::new(0));
        let worker = Counting {
            due: 5,
            worked: worked.clone(),
            errors: 1,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run(worker, Duration::from_secs(1), async move {
            let _ = stopped.await;
        }));
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(worked.load(Ordering::SeqCst), 105, "one error, five rows");
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("stops on shutdown")
            .expect("no panic");
    }
}
