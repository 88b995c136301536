//! One reconcile after a burst of usage, not one per push.
//!
//! [`Debouncer::mark_dirty`] says "usage changed". The debouncer runs its
//! action (a reconcile) once the marks have been quiet for
//! [`RECONCILE_QUIET`], or at the latest [`RECONCILE_MAX_DELAY`] after the
//! first mark it has not yet acted on (so a vendor pushing without pause
//! still gets reconciled). Marks that arrive while the action runs make
//! one more run after it. Runs never overlap.
//!
//! It lives with the [`App`]: the server starts one per app with
//! [`Debouncer::start`] and stops it when it stops; the app keeps a weak
//! handle to it, through which the push API and CSV imports reach it with
//! [`mark_usage_changed`]. The state is in memory: pushes already stored
//! when a process stops are picked up by the next reconcile, whatever
//! starts it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::app::App;
use crate::lock::lock;

/// How long usage must be quiet before the reconcile runs.
pub const RECONCILE_QUIET: Duration = Duration::from_secs(5);

/// The longest a reconcile waits after the first change it covers, however
/// busy the pushes.
pub const RECONCILE_MAX_DELAY: Duration = Duration::from_secs(60);

/// When the debouncer acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DebounceSettings {
    /// Quiet time after the last mark ([`RECONCILE_QUIET`]).
    pub quiet: Duration,
    /// Longest wait after the first mark ([`RECONCILE_MAX_DELAY`]).
    pub max_delay: Duration,
}

impl Default for DebounceSettings {
    fn default() -> Self {
        Self {
            quiet: RECONCILE_QUIET,
            max_delay: RECONCILE_MAX_DELAY,
        }
    }
}

type Action = Box<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

#[derive(Default)]
struct State {
    /// The first mark not yet acted on.
    first: Option<Instant>,
    /// The latest mark.
    last: Option<Instant>,
    stopped: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Notify,
    runs: AtomicU64,
    marks: AtomicU64,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn mark(&self) {
        let now = Instant::now();
        {
            let mut state = self.state();
            state.first.get_or_insert(now);
            state.last = Some(now);
        }
        self.marks.fetch_add(1, Ordering::Relaxed);
        self.wake.notify_one();
    }
}

/// The app's handle on the debouncer started for it (none, or one that
/// stopped, leaves usage changes to the next reconcile started another
/// way).
#[derive(Default)]
pub(crate) struct Slot(Mutex<Weak<Shared>>);

/// Runs an action (a reconcile) once per burst of changes. Dropping it
/// stops it (a run in progress is cancelled at its next await); prefer
/// [`Debouncer::shutdown`], which lets a run in progress finish.
pub struct Debouncer {
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
    /// The app whose [`Slot`] holds this debouncer, if started for one.
    registered: Option<App>,
}

impl std::fmt::Debug for Debouncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Debouncer")
            .field("runs", &self.runs())
            .field("pending", &self.pending())
            .finish()
    }
}

/// Tells the debouncer started for `app` (if any) that usage changed;
/// whether one was running. Without one, the change waits for the next
/// reconcile started another way (a schedule, the UI, the CLI).
pub fn mark_usage_changed(app: &App) -> bool {
    let shared = lock(&app.debouncer_slot().0).upgrade();
    match shared {
        Some(shared) => {
            shared.mark();
            true
        }
        None => {
            tracing::debug!("usage changed; no debouncer runs, the next reconcile picks it up");
            false
        }
    }
}

impl Debouncer {
    /// Starts the debouncer that reconciles `app` with the default
    /// settings, and makes it the one [`mark_usage_changed`] reaches for
    /// `app`. Needs a Tokio runtime.
    pub fn start(app: &App) -> Self {
        Self::start_with(app, DebounceSettings::default())
    }

    /// [`Debouncer::start`] with given settings.
    pub fn start_with(app: &App, settings: DebounceSettings) -> Self {
        let reconciler = app.clone();
        let mut debouncer = Self::with_action(settings, move || {
            let app = reconciler.clone();
            async move {
                match app.reconcile().await {
                    Ok(summary) => tracing::info!(
                        run = summary.run,
                        cards = summary.cards,
                        "reconciled after usage changed"
                    ),
                    Err(error) => {
                        tracing::error!(%error, "the reconcile after a usage change failed");
                    }
                }
            }
        });
        *lock(&app.debouncer_slot().0) = Arc::downgrade(&debouncer.shared);
        debouncer.registered = Some(app.clone());
        debouncer
    }

    /// A debouncer running `action`, not registered for any app (reach it
    /// with [`Debouncer::mark_dirty`]). Needs a Tokio runtime.
    pub fn with_action<F, Fut>(settings: DebounceSettings, action: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            runs: AtomicU64::new(0),
            marks: AtomicU64::new(0),
        });
        let action: Action = Box::new(move || Box::pin(action()));
        let task = tokio::spawn(run(Arc::clone(&shared), settings, action));
        Self {
            shared,
            task: Some(task),
            registered: None,
        }
    }

    /// Usage changed: run the action after the quiet time.
    pub fn mark_dirty(&self) {
        self.shared.mark();
    }

    /// Runs of the action that finished.
    pub fn runs(&self) -> u64 {
        self.shared.runs.load(Ordering::Relaxed)
    }

    /// Marks received.
    pub fn marks(&self) -> u64 {
        self.shared.marks.load(Ordering::Relaxed)
    }

    /// Whether a change waits for a run.
    pub fn pending(&self) -> bool {
        self.shared.state().first.is_some()
    }

    /// Stops: a run in progress finishes, a pending one is dropped (its
    /// usage is stored; the next reconcile covers it).
    pub async fn shutdown(mut self) {
        self.unregister();
        self.shared.state().stopped = true;
        self.shared.wake.notify_one();
        if let Some(task) = self.task.take()
            && let Err(error) = task.await
        {
            tracing::error!(%error, "the reconcile debouncer stopped abnormally");
        }
    }

    fn unregister(&mut self) {
        if let Some(app) = self.registered.take() {
            let mut slot = lock(&app.debouncer_slot().0);
            // A debouncer started later for the same app keeps its place.
            if std::ptr::eq(slot.as_ptr(), Arc::as_ptr(&self.shared)) {
                *slot = Weak::new();
            }
        }
    }
}

impl Drop for Debouncer {
    fn drop(&mut self) {
        self.unregister();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn run(shared: Arc<Shared>, settings: DebounceSettings, action: Action) {
    loop {
        // Wait for a mark.
        let first = loop {
            {
                let state = shared.state();
                if state.stopped {
                    return;
                }
                if let Some(first) = state.first {
                    break first;
                }
            }
            // `notify_one` keeps a permit when nobody waits, so a mark made
            // between the check above and this wait is not lost.
            shared.wake.notified().await;
        };
        // Wait for quiet, or for the longest delay.
        loop {
            let deadline = {
                let state = shared.state();
                if state.stopped {
                    return;
                }
                let last = state.last.unwrap_or(first);
                (last + settings.quiet).min(first + settings.max_delay)
            };
            if Instant::now() >= deadline {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {}
                () = shared.wake.notified() => {}
            }
        }
        {
            let mut state = shared.state();
            state.first = None;
            state.last = None;
        }
        action().await;
        shared.runs.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    fn counting(settings: DebounceSettings) -> (Debouncer, Arc<AtomicUsize>) {
        let count = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&count);
        let debouncer = Debouncer::with_action(settings, move || {
            let seen = Arc::clone(&seen);
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        });
        (debouncer, count)
    }

    const SETTINGS: DebounceSettings = DebounceSettings {
        quiet: Duration::from_secs(5),
        max_delay: Duration::from_secs(60),
    };

    #[tokio::test(start_paused = true)]
    async fn a_burst_makes_one_run_after_the_quiet_time() {
        let (debouncer, count) = counting(SETTINGS);
        for _ in 0..50 {
            debouncer.mark_dirty();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // 4.9 s after the first mark, 0.1 s after the last: nothing yet.
        assert_eq!(count.load(Ordering::SeqCst), 0);
        assert!(debouncer.pending());
        tokio::time::sleep(Duration::from_millis(4_800)).await;
        assert_eq!(
            count.load(Ordering::SeqCst),
            0,
            "still within the quiet time"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(count.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert_eq!(count.load(Ordering::SeqCst), 1, "one burst, one run");
        assert!(!debouncer.pending());
        // A later burst makes another run.
        for _ in 0..10 {
            debouncer.mark_dirty();
        }
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(count.load(Ordering::SeqCst), 2);
        assert_eq!(debouncer.runs(), 2);
        assert_eq!(debouncer.marks(), 60);
    }

    #[tokio::test(start_paused = true)]
    async fn pushes_without_pause_still_run_at_the_longest_delay() {
        // The longest delay falls between marks (made on whole seconds),
        // so no check races a run started at the same instant.
        let max_delay = Duration::from_millis(60_500);
        let (debouncer, count) = counting(DebounceSettings {
            max_delay,
            ..SETTINGS
        });
        // A mark every second for 150 s: never 5 s quiet. The first burst
        // runs at 60.5 s; the next starts with the mark at 61 s and runs
        // at 121.5 s.
        let runs_at = [60_500u64, 121_500];
        for second in 0..150u64 {
            debouncer.mark_dirty();
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now_ms = (second + 1) * 1_000;
            let expected = runs_at.iter().filter(|&&at| at <= now_ms).count();
            assert_eq!(
                count.load(Ordering::SeqCst),
                expected,
                "after {} s",
                second + 1
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn marks_during_a_run_make_one_more_run_and_runs_never_overlap() {
        let running = Arc::new(AtomicUsize::new(0));
        let overlapped = Arc::new(AtomicUsize::new(0));
        let count = Arc::new(AtomicUsize::new(0));
        let (r, o, c) = (running.clone(), overlapped.clone(), count.clone());
        let debouncer = Debouncer::with_action(SETTINGS, move || {
            let (r, o, c) = (r.clone(), o.clone(), c.clone());
            async move {
                if r.fetch_add(1, Ordering::SeqCst) > 0 {
                    o.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_secs(30)).await;
                r.fetch_sub(1, Ordering::SeqCst);
                c.fetch_add(1, Ordering::SeqCst);
            }
        });
        debouncer.mark_dirty();
        tokio::time::sleep(Duration::from_secs(10)).await; // the run started at 5 s
        for _ in 0..20 {
            debouncer.mark_dirty();
        }
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert_eq!(count.load(Ordering::SeqCst), 2);
        assert_eq!(overlapped.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_lets_the_run_finish_and_drops_what_is_pending() {
        let (debouncer, count) = counting(SETTINGS);
        debouncer.mark_dirty();
        debouncer.shutdown().await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(count.load(Ordering::SeqCst), 0);
    }
}
