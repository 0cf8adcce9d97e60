//! A small, dedicated pool of threads for password hashing.
//!
//! Verifying an argon2id hash takes ~19 MiB and tens of milliseconds. Run on tokio's blocking
//! pool (up to 512 threads), a flood of wrong passwords hashed that many at once: 48 concurrent
//! bad CONNECTs took the broker from 8 MB to 783 MB. Here at most `threads` hashes run at once
//! (the core count, 1 to 4), so hashing memory is bounded by `threads` × the hash's memory cost,
//! and the store keeps tokio's blocking pool to itself.
//!
//! Jobs queue per source address and the workers take them round-robin over addresses: a flood
//! from one address gets its share of the threads, not all of them, so a client from elsewhere
//! waits for at most one running hash before its own starts. Queues are bounded ([`PER_ADDRESS`]
//! jobs per address, [`TOTAL`] in all); a check that finds no room waits (asynchronously) up to
//! [`QUEUE_WAIT`] and then gives up with [`PoolError::Busy`] (the broker answers CONNACK 0x89
//! "Server busy", 3.1.1: 3 "Server unavailable"; the client was not checked, so it is not a
//! failed login).
//!
//! With a [`Throttle`], a worker asks it before hashing: a job whose address got blocked while it
//! waited is answered [`PoolError::Blocked`] without hashing, so a flood that was already queued
//! when the block began costs nothing more.
//!
//! The broker makes one pool and hands it to every [`Auth`](super::Auth) it loads, so reloads
//! (SIGHUP) keep the same threads. The threads start on the first job and end when the pool is
//! dropped (queued jobs are then answered [`PoolError::Failed`]).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, oneshot};

use super::throttle::Throttle;

/// Jobs one source address may have queued (not counting the ones running).
pub const PER_ADDRESS: usize = 8;
/// Jobs queued over all addresses.
pub const TOTAL: usize = 256;
/// How long a check waits for room in a full queue before giving up with [`PoolError::Busy`].
pub const QUEUE_WAIT: Duration = Duration::from_secs(5);

/// Why a job did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolError {
    /// No room in the queue within [`QUEUE_WAIT`].
    Busy,
    /// The address is blocked by the [`Throttle`] (checked just before hashing).
    Blocked,
    /// The job panicked, or the pool shut down (or has no thread).
    Failed,
}

/// The default number of threads: the core count, at least 1, at most 4.
#[must_use]
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 4))
}

type Work = Box<dyn FnOnce(bool) + Send>;

struct Job {
    key: IpAddr,
    /// Runs the job; `true` means "the address is blocked: answer without running".
    work: Work,
}

#[derive(Default)]
struct State {
    /// Queued jobs per address; an address is present only while it has jobs.
    queues: HashMap<IpAddr, VecDeque<Job>>,
    /// Addresses with queued jobs, in round-robin order.
    order: VecDeque<IpAddr>,
    queued: usize,
    closed: bool,
}

impl State {
    fn has_room(&self, key: &IpAddr) -> bool {
        self.queued < TOTAL && self.queues.get(key).map_or(0, VecDeque::len) < PER_ADDRESS
    }

    fn push(&mut self, job: Job) {
        let q = self.queues.entry(job.key).or_default();
        if q.is_empty() {
            self.order.push_back(job.key);
        }
        q.push_back(job);
        self.queued += 1;
    }

    /// The next job, round-robin over addresses.
    fn pop(&mut self) -> Option<Job> {
        let key = self.order.pop_front()?;
        let q = self.queues.get_mut(&key)?;
        let job = q.pop_front();
        if q.is_empty() {
            self.queues.remove(&key);
        } else {
            self.order.push_back(key);
        }
        if job.is_some() {
            self.queued -= 1;
        }
        job
    }
}

struct Inner {
    state: Mutex<State>,
    /// Workers wait here for jobs.
    work: Condvar,
    /// Checks waiting for room wait here.
    room: Notify,
    gate: Option<Arc<Throttle>>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The password-hashing pool (see the module docs).
pub struct HashPool {
    inner: Arc<Inner>,
    threads: usize,
    /// How many worker threads started (set on the first job).
    started: OnceLock<usize>,
}

impl std::fmt::Debug for HashPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.inner.lock();
        f.debug_struct("HashPool")
            .field("threads", &self.threads)
            .field("started", &self.started.get())
            .field("queued", &st.queued)
            .finish_non_exhaustive()
    }
}

impl HashPool {
    /// A pool of `threads` threads (at least 1), started on the first job. With `gate`, jobs
    /// from an address it blocks are answered [`PoolError::Blocked`] without running.
    #[must_use]
    pub fn new(threads: usize, gate: Option<Arc<Throttle>>) -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                work: Condvar::new(),
                room: Notify::new(),
                gate,
            }),
            threads: threads.max(1),
            started: OnceLock::new(),
        }
    }

    /// The pool used by an [`Auth`](super::Auth) that was not given one (unit tests, tools):
    /// [`default_threads`] threads, no throttle, shared by the whole process.
    pub fn fallback() -> &'static HashPool {
        static POOL: OnceLock<HashPool> = OnceLock::new();
        POOL.get_or_init(|| HashPool::new(default_threads(), None))
    }

    /// Number of worker threads.
    #[must_use]
    pub fn threads(&self) -> usize {
        self.threads
    }

    fn start(&self) -> usize {
        *self.started.get_or_init(|| {
            let mut n = 0;
            for i in 0..self.threads {
                let inner = self.inner.clone();
                match std::thread::Builder::new()
                    .name(format!("hermod-hash-{i}"))
                    .spawn(move || worker(&inner))
                {
                    Ok(_) => n += 1,
                    Err(e) => tracing::warn!(error = %e, "cannot start a password-hashing thread"),
                }
            }
            n
        })
    }

    /// Runs `f` on a pool thread, queued under `key` (the client's address), and returns its
    /// result. Waits up to [`QUEUE_WAIT`] for room in the queue.
    ///
    /// # Errors
    /// [`PoolError`]: no room in time, the address is blocked, or the job did not complete.
    pub async fn run<T, F>(&self, key: IpAddr, f: F) -> Result<T, PoolError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        if self.start() == 0 {
            return Err(PoolError::Failed);
        }
        let key = key.to_canonical();
        let (tx, rx) = oneshot::channel::<Result<T, PoolError>>();
        let work: Work = Box::new(move |blocked| {
            if tx.is_closed() {
                return; // the client is gone: do not hash for nobody
            }
            let r = if blocked {
                Err(PoolError::Blocked)
            } else {
                Ok(f())
            };
            let _ = tx.send(r);
        });
        let mut job = Some(Job { key, work });
        let deadline = tokio::time::Instant::now() + QUEUE_WAIT;
        loop {
            let notified = self.inner.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.inner.lock();
                if st.closed {
                    return Err(PoolError::Failed);
                }
                if st.has_room(&key) {
                    if let Some(j) = job.take() {
                        st.push(j);
                    }
                    drop(st);
                    self.inner.work.notify_one();
                    break;
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(PoolError::Busy);
            }
        }
        rx.await.unwrap_or(Err(PoolError::Failed))
    }
}

impl Drop for HashPool {
    fn drop(&mut self) {
        let orphans: Vec<Job> = {
            let mut st = self.inner.lock();
            st.closed = true;
            std::iter::from_fn(|| st.pop()).collect()
        };
        drop(orphans); // their callers get `Failed`
        self.inner.work.notify_all();
        self.inner.room.notify_waiters();
    }
}

fn worker(inner: &Inner) {
    loop {
        let job = {
            let mut st = inner.lock();
            loop {
                if st.closed {
                    return;
                }
                if let Some(job) = st.pop() {
                    break job;
                }
                st = inner.work.wait(st).unwrap_or_else(PoisonError::into_inner);
            }
        };
        inner.room.notify_waiters();
        let blocked = inner
            .gate
            .as_ref()
            .is_some_and(|t| t.blocked_for(job.key, Instant::now()).is_some());
        // A panicking job drops its answer channel (the caller sees `Failed`); the thread lives on.
        let work = job.work;
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || work(blocked)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::throttle::ThrottleSettings;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_jobs_and_bounds_concurrency() {
        let pool = Arc::new(HashPool::new(2, None));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..20u8 {
            let (pool, running, peak) = (pool.clone(), running.clone(), peak.clone());
            tasks.push(tokio::spawn(async move {
                pool.run(ip(&format!("10.0.0.{}", i % 3)), move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(5));
                    running.fetch_sub(1, Ordering::SeqCst);
                    i
                })
                .await
            }));
        }
        for (i, t) in tasks.into_iter().enumerate() {
            assert_eq!(t.await.expect("task"), Ok(i as u8));
        }
        assert!(peak.load(Ordering::SeqCst) <= 2, "at most 2 jobs at once");
    }

    /// Occupies the pool's only thread with a job from `key` until the returned sender is
    /// used or dropped; returns once the job runs.
    async fn hold(pool: &Arc<HashPool>, key: IpAddr) -> std::sync::mpsc::Sender<()> {
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let (started_tx, started_rx) = oneshot::channel::<()>();
        let p = pool.clone();
        tokio::spawn(async move {
            let _ = p
                .run(key, move || {
                    let _ = started_tx.send(());
                    let _ = release_rx.recv_timeout(Duration::from_secs(10));
                })
                .await;
        });
        started_rx.await.expect("held job started");
        release_tx
    }

    /// Polls `f` once (so a `run` gets queued or starts waiting for room).
    async fn poll_once<F: std::future::Future + Unpin>(f: &mut F) -> bool {
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(std::pin::Pin::new(&mut *f).poll(cx).is_ready())
        })
        .await
    }

    #[tokio::test]
    async fn round_robin_over_addresses() {
        let pool = Arc::new(HashPool::new(1, None));
        let release = hold(&pool, ip("10.0.0.1")).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let job = |tag: &'static str| {
            let order = order.clone();
            move || order.lock().expect("order").push(tag)
        };
        // 3 jobs from A queued before 1 from B: B runs second, not last.
        let mut a1 = Box::pin(pool.run(ip("10.0.0.1"), job("a1")));
        let mut a2 = Box::pin(pool.run(ip("10.0.0.1"), job("a2")));
        let mut a3 = Box::pin(pool.run(ip("10.0.0.1"), job("a3")));
        let mut b1 = Box::pin(pool.run(ip("10.0.0.2"), job("b1")));
        for f in [&mut a1, &mut a2, &mut a3] {
            assert!(!poll_once(f).await);
        }
        assert!(!poll_once(&mut b1).await);
        drop(release);
        let (a1, a2, a3, b1) = tokio::join!(a1, a2, a3, b1);
        assert_eq!([a1, a2, a3, b1], [Ok(()); 4]);
        assert_eq!(
            *order.lock().expect("order"),
            vec!["a1", "b1", "a2", "a3"],
            "B does not wait behind A's whole queue"
        );
    }

    #[tokio::test]
    async fn full_queue_gives_up_after_the_deadline() {
        let pool = Arc::new(HashPool::new(1, None));
        let key = ip("10.0.0.9");
        let release = hold(&pool, key).await;
        let mut queued = Vec::new();
        for _ in 0..PER_ADDRESS {
            let mut f = Box::pin(pool.run(key, || ()));
            assert!(!poll_once(&mut f).await);
            queued.push(f);
        }
        tokio::time::pause();
        let t0 = tokio::time::Instant::now();
        assert_eq!(
            pool.run(key, || ()).await,
            Err(PoolError::Busy),
            "no room for this address"
        );
        assert!(t0.elapsed() >= QUEUE_WAIT, "waited for room first");
        tokio::time::resume();
        // Another address still has room.
        let mut other = Box::pin(pool.run(ip("10.0.0.10"), || 2));
        assert!(!poll_once(&mut other).await);
        drop(release);
        for f in queued {
            assert_eq!(f.await, Ok(()));
        }
        assert_eq!(other.await, Ok(2));
    }

    #[tokio::test]
    async fn blocked_address_is_not_hashed() {
        let throttle = Arc::new(Throttle::new(ThrottleSettings {
            max_failures: 1,
            window: Duration::from_secs(60),
            block: Duration::from_secs(60),
            max_addresses: 10,
            exempt_loopback: true,
        }));
        let pool = HashPool::new(1, Some(throttle.clone()));
        assert_eq!(pool.run(ip("10.0.0.3"), || 7).await, Ok(7));
        throttle.record_failure(ip("10.0.0.3"), Instant::now());
        assert_eq!(
            pool.run(ip("10.0.0.3"), || 7).await,
            Err(PoolError::Blocked)
        );
        assert_eq!(pool.run(ip("10.0.0.4"), || 8).await, Ok(8));
    }

    #[tokio::test]
    async fn a_panicking_job_fails_alone() {
        let pool = HashPool::new(1, None);
        let r: Result<(), _> = pool.run(ip("10.0.0.5"), || panic!("boom")).await;
        assert_eq!(r, Err(PoolError::Failed));
        assert_eq!(
            pool.run(ip("10.0.0.5"), || 1).await,
            Ok(1),
            "thread survives"
        );
    }

    #[test]
    fn threads_end_when_the_pool_is_dropped() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let pool = HashPool::new(2, None);
        assert_eq!(rt.block_on(pool.run(ip("10.0.0.6"), || 1)), Ok(1));
        let weak = Arc::downgrade(&pool.inner);
        drop(pool);
        let deadline = Instant::now() + Duration::from_secs(5);
        while weak.strong_count() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(weak.strong_count(), 0, "worker threads exited");
    }
}
