//! Cross-port dynamic batching with admission control.
//!
//! Ports send one probe at a time; the engines are fastest on batches (one
//! pass over the gallery serves every probe in the batch). Every Identify,
//! unary or streamed, from every port, is submitted here; one dedicated
//! thread forms batches of up to `max_batch` probes, waiting at most
//! `max_wait` after the oldest queued request for more to arrive, runs each
//! batch on the engine, and answers every request of the batch as soon as it
//! is done.
//!
//! - **Sized by cost**: a batch's engine time grows with its size (a fixed
//!   pass over the rows plus arithmetic per probe, [`cost::BatchCost`],
//!   learned from the batches run). With a `batch_time_target`, a batch
//!   takes only as many probes as are predicted to finish within it, so a
//!   full queue cannot turn into one batch that keeps every port waiting
//!   for a long scan; the queue wait in front of it is bounded by admission.
//!   Every few batches cut short, one takes a probe more, so that the model
//!   keeps learning the cost around the limit.
//! - **Fair**: requests wait in per-port queues served round robin
//!   ([`queue::FairQueue`]), so one busy port cannot starve the others.
//! - **Bounded**: a request that would wait longer than `max_queue_wait`, or
//!   could not be answered before its deadline, or finds the queue at
//!   `capacity`, is refused at once with RESOURCE_EXHAUSTED; at capacity the
//!   newest request of the longest port queue is evicted instead when the
//!   arriving port has fewer waiting (so shedding falls on the port causing
//!   the overload).
//! - **Deadlines**: a request whose deadline passed while it waited is
//!   answered DEADLINE_EXCEEDED and never reaches the engine; one whose client
//!   went away is dropped.
//! - **Off the runtime**: the engine runs on the dispatcher thread (and the
//!   CPU engine's own rayon pool); the queue lock is never held across an
//!   engine call.

pub mod cost;
mod error;
pub mod queue;

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use facegate_core::live::LiveGallery;
use facegate_core::{Candidate, ProbeBatch};
use tokio::sync::oneshot;

use crate::engines::FailoverEngine;
use crate::metrics::Metrics;
use cost::BatchCost;
pub use error::DispatchError;
use queue::FairQueue;

/// How batches are formed and how much may wait.
#[derive(Debug, Clone, Copy)]
pub struct DispatchSettings {
    /// Most probes per engine call; 1 turns batching off.
    pub max_batch: usize,
    /// Longest time the oldest queued request waits for a batch to fill
    /// while the engine is idle.
    pub max_wait: Duration,
    /// Batches take only as many probes as are predicted to run within this
    /// on the engine (at least one); `None`: up to `max_batch` whatever
    /// they cost.
    pub batch_time_target: Option<Duration>,
    /// Most requests queued at once.
    pub capacity: usize,
    /// Requests expected to wait longer than this before their batch starts
    /// are refused on arrival.
    pub max_queue_wait: Duration,
}

/// One validated search request.
pub struct Job {
    /// The prepared probe, shared without copying.
    pub probe: Arc<ProbeBatch>,
    /// Candidates wanted.
    pub top_k: usize,
    /// When the client stops waiting, if it said.
    pub deadline: Option<Instant>,
}

/// A search answered by the dispatcher.
#[derive(Debug)]
pub struct SearchAnswer {
    /// Best first, at most the job's `top_k`.
    pub candidates: Vec<Candidate>,
    /// The gallery searched: candidates' subject numbers are its own, so
    /// ids must be resolved here even if a reload has swapped it since.
    pub gallery: Arc<LiveGallery>,
    /// Time the request waited in the queue.
    pub queue_time: Duration,
    /// Time the engine took for the whole batch.
    pub engine_time: Duration,
    /// Probes in the batch this request ran in.
    pub batch_size: usize,
}

/// What a submitted request eventually receives.
pub type Reply = Result<SearchAnswer, DispatchError>;

struct Pending {
    job: Job,
    reply: oneshot::Sender<Reply>,
}

/// State shared between submitters and the dispatcher thread.
struct Waiting {
    queue: FairQueue<Pending>,
    /// When the batch now on the engine started, and its size.
    busy: Option<(Instant, usize)>,
    /// Engine time per batch size, learned from the batches run.
    cost: BatchCost,
    /// Batches cut short by the time target since the last one that took
    /// a probe more (see [`EXPLORE_EVERY`]).
    limited_batches: u32,
    closed: bool,
}

struct Shared {
    waiting: Mutex<Waiting>,
    wake: Condvar,
    settings: DispatchSettings,
    engines: EngineSource,
    metrics: Arc<Metrics>,
}

/// Where each batch gets its engines: the generation served when the batch
/// starts (a reload swaps it between batches, never during one).
pub type EngineSource = Arc<dyn Fn() -> Arc<FailoverEngine> + Send + Sync>;

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Waiting> {
        // The lock guards plain data that every holder leaves consistent; a
        // panic elsewhere cannot leave it half-updated.
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The batching dispatcher; dropping it lets its thread finish what is
/// queued and exit.
pub struct Dispatcher {
    shared: Arc<Shared>,
}

/// The shortest retry pushback a refusal carries: a refusal with an
/// expected wait of zero (a full queue before any batch was timed) still
/// asks the port to pause rather than resend at once.
const MIN_RETRY_AFTER: Duration = Duration::from_millis(10);

/// While the time target cuts batches short, every this many batches one
/// takes a probe more than the model allows. A model that overestimates
/// larger batches (one fitted to mostly single probes sees only the step
/// from one probe to two) would otherwise never see a larger batch again
/// and keep the limit low for good; the occasional larger batch lets it
/// learn the cost around the limit, where it matters, at the price of that
/// batch running a little past the target.
const EXPLORE_EVERY: u32 = 4;

impl Dispatcher {
    /// Starts the dispatcher thread, taking each batch's engines from `engines`.
    pub fn start(
        engines: EngineSource,
        settings: DispatchSettings,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Dispatcher> {
        let shared = Arc::new(Shared {
            waiting: Mutex::new(Waiting {
                queue: FairQueue::default(),
                busy: None,
                cost: BatchCost::default(),
                limited_batches: 0,
                closed: false,
            }),
            wake: Condvar::new(),
            settings,
            engines,
            metrics,
        });
        let worker = shared.clone();
        std::thread::Builder::new()
            .name("facegate-dispatch".into())
            .spawn(move || run(&worker))?;
        Ok(Dispatcher { shared })
    }

    /// The settings in force.
    pub fn settings(&self) -> DispatchSettings {
        self.shared.settings
    }

    /// Queues a search from `port` and waits for its batch, giving up at
    /// the job's deadline (a late answer is never a success).
    pub async fn search(&self, port: &str, job: Job) -> Reply {
        let deadline = job.deadline;
        let reply = self.submit(port, job)?;
        let answer = match deadline {
            Some(d) => tokio::time::timeout_at(d.into(), reply)
                .await
                .map_err(|_| DispatchError::DeadlineExceeded)?,
            None => reply.await,
        };
        answer.map_err(|_| DispatchError::Dropped)?
    }

    /// Queues a search for `port`, or refuses it at once when the server
    /// cannot take it ([`DispatchError::Overloaded`]).
    pub fn submit(&self, port: &str, job: Job) -> Result<oneshot::Receiver<Reply>, DispatchError> {
        let s = &self.shared;
        let now = Instant::now();
        let (tx, rx) = oneshot::channel();
        let mut w = s.lock();
        if w.closed {
            return Err(DispatchError::ShuttingDown);
        }
        let wait = expected_wait(&w, port, &s.settings, now);
        // A refused request, or one evicted to make room for it, may come
        // back once the queue ahead of this one has run.
        let retry_after = wait.max(MIN_RETRY_AFTER);
        // Only the queue wait is held against a request: an idle engine always
        // takes it, so one slow batch (a cold first scan) cannot shut the
        // door for good by inflating the estimate no later batch corrects.
        let refusal = if job.deadline.is_some_and(|d| now + wait > d) {
            Some("it would expire in the queue before its deadline")
        } else if wait > s.settings.max_queue_wait {
            Some("queue wait over the limit")
        } else if w.queue.len() >= s.settings.capacity {
            // Full: make room at the expense of the longest port queue, if
            // that port has more waiting than this one will.
            let own = w.queue.port_len(port) + 1;
            match w.queue.longest() {
                Some((long, n)) if n > own => {
                    let long = long.to_owned();
                    if let Some(evicted) = w.queue.pop_newest(&long) {
                        s.metrics.shed.inc();
                        let _ = evicted.reply.send(Err(DispatchError::Overloaded {
                            reason: "queue full, evicted for a quieter port",
                            retry_after,
                        }));
                    }
                    None
                }
                _ => Some("queue full"),
            }
        } else {
            None
        };
        if let Some(reason) = refusal {
            s.metrics.shed.inc();
            return Err(DispatchError::Overloaded {
                reason,
                retry_after,
            });
        }
        w.queue.push(port, now, Pending { job, reply: tx });
        s.metrics.queue_depth.set(w.queue.len() as i64);
        drop(w);
        s.wake.notify_one();
        Ok(rx)
    }
}

/// The most probes the next batch takes: `max_batch`, or fewer when the
/// cost model predicts that many would overrun the batch time target.
fn batch_limit(cost: &BatchCost, settings: &DispatchSettings) -> usize {
    let max = settings.max_batch.max(1);
    match settings.batch_time_target {
        Some(target) => cost.largest_within(target.as_secs_f64(), max),
        None => max,
    }
}

/// Time a new request from `port` should wait before its batch starts: the
/// rest of the batch on the engine, plus the full batches needed for the
/// requests served before it. Round robin serves, before it, at most as many
/// requests from each port as this port will have queued.
fn expected_wait(w: &Waiting, port: &str, settings: &DispatchSettings, now: Instant) -> Duration {
    if !w.cost.is_known() {
        return Duration::ZERO; // nothing measured yet: admit
    }
    let own = w.queue.port_len(port) + 1;
    let ahead: usize = w.queue.len().min(own * w.queue.active_ports().max(1));
    let running = w.busy.map_or(0.0, |(t, size)| {
        (w.cost.secs(size) - now.duration_since(t).as_secs_f64()).max(0.0)
    });
    let limit = batch_limit(&w.cost, settings);
    let batches_ahead = (ahead / limit) as f64;
    Duration::from_secs_f64(running + batches_ahead * w.cost.secs(limit))
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_all();
    }
}

/// The dispatcher thread: form a batch, run it, answer, repeat.
fn run(s: &Shared) {
    let mut batch = Vec::with_capacity(s.settings.max_batch);
    loop {
        batch.clear();
        let started = {
            let mut w = s.lock();
            loop {
                if w.queue.is_empty() {
                    if w.closed {
                        return;
                    }
                    w = s.wake.wait(w).unwrap_or_else(|p| p.into_inner());
                    continue;
                }
                let now = Instant::now();
                let due = w.queue.oldest().map_or(now, |t| t + s.settings.max_wait);
                if w.queue.len() >= batch_limit(&w.cost, &s.settings) || now >= due || w.closed {
                    break;
                }
                w = s
                    .wake
                    .wait_timeout(w, due - now)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            let mut limit = batch_limit(&w.cost, &s.settings);
            s.metrics.batch_limit.set(limit as i64);
            if limit < s.settings.max_batch && w.queue.len() > limit {
                w.limited_batches += 1;
                if w.limited_batches >= EXPLORE_EVERY {
                    w.limited_batches = 0;
                    limit += 1;
                }
            }
            w.queue.pop_round_robin(limit, &mut batch);
            s.metrics.queue_depth.set(w.queue.len() as i64);
            let now = Instant::now();
            w.busy = Some((now, batch.len()));
            now
        };
        let ran = run_batch(s, &mut batch, started);
        let mut w = s.lock();
        w.busy = None;
        if let Some((size, secs)) = ran {
            w.cost.observe(size, secs);
            s.metrics.batch_cost_fixed.set(w.cost.fixed());
            s.metrics.batch_cost_per_probe.set(w.cost.per_probe());
        }
    }
}

/// Drops expired and abandoned requests, searches the rest as one batch and
/// answers each; returns the probes searched and the engine time when the
/// engine ran.
fn run_batch(
    s: &Shared,
    batch: &mut Vec<(Instant, Pending)>,
    started: Instant,
) -> Option<(usize, f64)> {
    let mut to_search = Vec::with_capacity(batch.len());
    for (enqueued, p) in batch.drain(..) {
        if p.reply.is_closed() {
            continue; // the client gave up: skip the work
        }
        if p.job.deadline.is_some_and(|d| d <= started) {
            s.metrics.queue_expired.inc();
            let _ = p.reply.send(Err(DispatchError::ExpiredInQueue));
            continue;
        }
        s.metrics
            .queue_wait_seconds
            .observe(started.duration_since(enqueued).as_secs_f64());
        to_search.push((started.duration_since(enqueued), p));
    }
    if to_search.is_empty() {
        return None;
    }
    s.metrics.batch_size.observe(to_search.len() as f64);
    let probes = ProbeBatch::gather(to_search.iter().map(|(_, p)| p.job.probe.as_ref()));
    let top_k = to_search
        .iter()
        .map(|(_, p)| p.job.top_k)
        .max()
        .unwrap_or(1);
    let engines = (s.engines)();
    let result = probes
        .map_err(facegate_core::SearchError::from)
        .and_then(|probes| engines.search(&probes, top_k));
    let batch_size = to_search.len();
    match result {
        Ok(r) if r.candidates.len() == batch_size => {
            let engine_time = r.engine_time;
            for ((queue_time, p), mut candidates) in to_search.into_iter().zip(r.candidates) {
                candidates.truncate(p.job.top_k);
                let _ = p.reply.send(Ok(SearchAnswer {
                    candidates,
                    gallery: engines.live().clone(),
                    queue_time,
                    engine_time,
                    batch_size,
                }));
            }
            Some((batch_size, engine_time.as_secs_f64()))
        }
        Ok(r) => {
            tracing::error!(
                expected = batch_size,
                got = r.candidates.len(),
                "engine answered the wrong number of probes"
            );
            for (_, p) in to_search {
                let _ = p.reply.send(Err(DispatchError::Inconsistent));
            }
            Some((batch_size, r.engine_time.as_secs_f64()))
        }
        Err(e) => {
            tracing::error!(error = %e, batch_size, "batch search failed");
            let e = Arc::new(e);
            for (_, p) in to_search {
                let _ = p.reply.send(Err(DispatchError::Search(e.clone())));
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engines::OpenedGpu;
    use facegate_core::format::{BuildOptions, SliceRows, build_gallery};
    use facegate_core::{CpuEngine, ElementType, Gallery, ScanTarget, SearchEngine, SearchError};
    use std::sync::atomic::{AtomicUsize, Ordering};

    const DIM: usize = 16;
    const SUBJECTS: usize = 64;

    /// An engine that takes `delay` per batch plus `per_probe` for each
    /// probe, and logs batch sizes, standing in for a long scan so that
    /// queues build up deterministically.
    struct Slow {
        inner: CpuEngine,
        delay: Duration,
        per_probe: Duration,
        batches: Mutex<Vec<usize>>,
        panics_left: AtomicUsize,
    }

    impl SearchEngine for Slow {
        fn describe(&self) -> String {
            "gpu/slow".into()
        }
        fn search(&self, p: &ProbeBatch, k: usize) -> Result<Vec<Vec<Candidate>>, SearchError> {
            self.batches.lock().unwrap().push(p.len());
            if self
                .panics_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                panic!("simulated engine bug");
            }
            std::thread::sleep(self.delay + self.per_probe * p.len() as u32);
            self.inner.search(p, k)
        }
    }

    struct Rig {
        _dir: tempfile::TempDir,
        slow: Arc<Slow>,
        metrics: Arc<Metrics>,
        dispatcher: Dispatcher,
    }

    fn rig(delay_ms: u64, settings: DispatchSettings) -> Rig {
        rig_with_cost(delay_ms, 0, settings)
    }

    fn rig_with_cost(delay_ms: u64, per_probe_ms: u64, settings: DispatchSettings) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.fgal");
        let data: Vec<f32> = (0..SUBJECTS * DIM)
            .map(|i| ((i * 7919 % 101) as f32 - 50.0) / 50.0)
            .collect();
        let ids: Vec<String> = (0..SUBJECTS).map(|i| format!("s{i:03}")).collect();
        let opts = BuildOptions {
            scan_type: ElementType::Int8,
            model_tag: "m".into(),
            overwrite: false,
        };
        build_gallery(
            &path,
            &mut SliceRows::new(&data, DIM, "t").unwrap(),
            &ids,
            "ids",
            &opts,
            &mut |_| {},
        )
        .unwrap();
        let gallery = Arc::new(Gallery::open(&path).unwrap());
        let slow = Arc::new(Slow {
            inner: CpuEngine::new(ScanTarget::whole(gallery.clone())),
            delay: Duration::from_millis(delay_ms),
            per_probe: Duration::from_millis(per_probe_ms),
            batches: Mutex::new(Vec::new()),
            panics_left: AtomicUsize::new(0),
        });
        let metrics = Metrics::new();
        let engines = Arc::new(FailoverEngine::new(
            Arc::new(LiveGallery::new(gallery.clone())),
            Some(OpenedGpu {
                engine: slow.clone(),
                memory_bytes: 0,
            }),
            metrics.clone(),
        ));
        let dispatcher =
            Dispatcher::start(Arc::new(move || engines.clone()), settings, metrics.clone())
                .unwrap();
        Rig {
            _dir: dir,
            slow,
            metrics,
            dispatcher,
        }
    }

    fn settings(max_batch: usize) -> DispatchSettings {
        DispatchSettings {
            max_batch,
            max_wait: Duration::from_millis(2),
            batch_time_target: None,
            capacity: 1000,
            max_queue_wait: Duration::from_secs(10),
        }
    }

    impl Rig {
        /// A job whose probe is subject `s`'s own template, so its best
        /// candidate is known.
        fn job(&self, s: usize) -> Job {
            let data: Vec<f32> = (0..DIM)
                .map(|j| (((s * DIM + j) * 7919 % 101) as f32 - 50.0) / 50.0)
                .collect();
            Job {
                probe: Arc::new(ProbeBatch::single(DIM, &data).unwrap()),
                top_k: 3,
                deadline: None,
            }
        }

        fn batches(&self) -> Vec<usize> {
            self.slow.batches.lock().unwrap().clone()
        }
    }

    /// The request's answer, its error as the client would see it.
    async fn answer(rx: oneshot::Receiver<Reply>) -> Result<SearchAnswer, tonic::Status> {
        let reply = rx.await.expect("the dispatcher answers every request");
        reply.map_err(tonic::Status::from)
    }

    /// A refusal on arrival, as the client would see it.
    fn refused(r: Result<oneshot::Receiver<Reply>, DispatchError>) -> tonic::Status {
        tonic::Status::from(r.expect_err("refused at once"))
    }

    #[tokio::test]
    async fn requests_arriving_during_a_scan_share_the_next_batch() {
        let r = rig(60, settings(32));
        let first = r.dispatcher.submit("p0", r.job(0)).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let rest: Vec<_> = (1..11)
            .map(|s| r.dispatcher.submit(&format!("p{s}"), r.job(s)).unwrap())
            .collect();
        let a = answer(first).await.unwrap();
        assert_eq!(a.batch_size, 1);
        assert_eq!(a.candidates[0].subject, 0);
        for (s, rx) in (1..11).zip(rest) {
            let a = answer(rx).await.unwrap();
            assert_eq!(a.batch_size, 10);
            assert_eq!(a.candidates.len(), 3);
            // Each request gets the answer to its own probe.
            assert_eq!(a.candidates[0].subject, s as u32);
            assert!(a.queue_time >= Duration::from_millis(20), "{a:?}");
        }
        assert_eq!(r.batches(), [1, 10]);
        assert_eq!(r.metrics.batch_size.get_sample_count(), 2);
        assert_eq!(r.metrics.batch_size.get_sample_sum(), 11.0);
    }

    /// Runs one probe, then three that arrive during it (teaching the cost
    /// model two sizes), then 20 more that queue behind a batch; returns the
    /// sizes of the batches that served the 20.
    async fn flood_after_learning(r: &Rig) -> Vec<usize> {
        let first = r.dispatcher.submit("p0", r.job(0)).unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let three: Vec<_> = (1..4)
            .map(|s| r.dispatcher.submit(&format!("p{s}"), r.job(s)).unwrap())
            .collect();
        answer(first).await.unwrap();
        // The three are on the engine now; 20 more queue behind them.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let flood: Vec<_> = (4..24)
            .map(|s| r.dispatcher.submit(&format!("p{s}"), r.job(s)).unwrap())
            .collect();
        for rx in three {
            assert_eq!(answer(rx).await.unwrap().batch_size, 3);
        }
        for (s, rx) in (4..24).zip(flood) {
            assert_eq!(answer(rx).await.unwrap().candidates[0].subject, s as u32);
        }
        assert_eq!(&r.batches()[..2], [1, 3]);
        r.batches()[2..].to_vec()
    }

    #[tokio::test]
    async fn batches_grow_only_as_far_as_the_time_target_allows() {
        // 20 ms + 20 ms per probe: a 110 ms target fits 4 probes (100 ms);
        // every fourth batch cut short takes one more, to keep learning.
        let target = DispatchSettings {
            batch_time_target: Some(Duration::from_millis(110)),
            ..settings(32)
        };
        let r = rig_with_cost(20, 20, target);
        let sizes = flood_after_learning(&r).await;
        assert_eq!(sizes, [4, 4, 4, 5, 3], "{:?}", r.batches());
        assert_eq!(r.metrics.batch_limit.get(), 4);

        // Without a target the same queue is one batch of 20 (420 ms).
        let r = rig_with_cost(20, 20, settings(32));
        assert_eq!(flood_after_learning(&r).await, [20]);
    }

    #[tokio::test]
    async fn batch_size_one_turns_batching_off() {
        let r = rig(10, settings(1));
        let rx: Vec<_> = (0..6)
            .map(|s| r.dispatcher.submit("p", r.job(s)).unwrap())
            .collect();
        for (s, rx) in rx.into_iter().enumerate() {
            let a = answer(rx).await.unwrap();
            assert_eq!((a.batch_size, a.candidates[0].subject), (1, s as u32));
        }
        assert_eq!(r.batches(), [1; 6]);
    }

    #[tokio::test]
    async fn a_full_queue_sheds_at_once_and_evicts_from_the_longest_port() {
        let r = rig(
            100,
            DispatchSettings {
                capacity: 4,
                ..settings(32)
            },
        );
        let running = r.dispatcher.submit("busy", r.job(0)).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let queued: Vec<_> = (1..5)
            .map(|s| r.dispatcher.submit("busy", r.job(s)).unwrap())
            .collect();
        // Same port, queue full: refused on the spot.
        let t = Instant::now();
        let err = refused(r.dispatcher.submit("busy", r.job(5)));
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        assert!(t.elapsed() < Duration::from_millis(20));
        // No batch timed yet, so no expected wait: the shortest pause.
        assert_eq!(facegate_api::pushback::of(&err), Some(MIN_RETRY_AFTER));
        // Another port: admitted, at the busy port's expense.
        let quiet = r.dispatcher.submit("quiet", r.job(6)).unwrap();
        let mut queued = queued;
        let evicted = queued.pop().unwrap();
        assert_eq!(
            answer(evicted).await.unwrap_err().code(),
            tonic::Code::ResourceExhausted
        );
        assert_eq!(answer(quiet).await.unwrap().candidates[0].subject, 6);
        answer(running).await.unwrap();
        for rx in queued {
            answer(rx).await.unwrap();
        }
        assert_eq!(r.metrics.shed.get(), 2);
    }

    #[tokio::test]
    async fn requests_that_expire_in_the_queue_never_reach_the_engine() {
        let r = rig(80, settings(32));
        let running = r.dispatcher.submit("p", r.job(0)).unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        let mut late = r.job(1);
        late.deadline = Some(Instant::now() + Duration::from_millis(20));
        let late = r.dispatcher.submit("p", late).unwrap();
        answer(running).await.unwrap();
        let err = answer(late).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::DeadlineExceeded);
        assert_eq!(r.batches(), [1], "the expired request was not searched");
        assert_eq!(r.metrics.queue_expired.get(), 1);
    }

    #[tokio::test]
    async fn expected_waits_over_the_limit_or_past_the_deadline_are_shed() {
        let r = rig(
            100,
            DispatchSettings {
                max_queue_wait: Duration::from_millis(50),
                ..settings(32)
            },
        );
        // Nothing measured yet: admitted; this teaches the dispatcher ~100 ms.
        answer(r.dispatcher.submit("p", r.job(0)).unwrap())
            .await
            .unwrap();
        let running = r.dispatcher.submit("p", r.job(1)).unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        let err = refused(r.dispatcher.submit("p", r.job(2)));
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        assert!(err.message().contains("queue wait"), "{}", err.message());
        // The pushback is the wait that refused it: the rest of the running
        // ~100 ms batch (its first 10 ms and more have passed).
        let pushback = facegate_api::pushback::of(&err).expect("a pushback");
        assert!(
            (Duration::from_millis(51)..=Duration::from_millis(105)).contains(&pushback),
            "{pushback:?}"
        );
        answer(running).await.unwrap();

        // Busy for ~90 ms more, and the deadline is 30 ms away.
        let running = r.dispatcher.submit("p", r.job(3)).unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        let mut hurried = r.job(4);
        hurried.deadline = Some(Instant::now() + Duration::from_millis(30));
        let err = refused(r.dispatcher.submit("p", hurried));
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        assert!(err.message().contains("deadline"), "{}", err.message());
        answer(running).await.unwrap();
        // An idle engine takes even a hurried request: the estimate never
        // locks the door.
        let mut hurried = r.job(5);
        hurried.deadline = Some(Instant::now() + Duration::from_millis(30));
        let late = r.dispatcher.submit("p", hurried).unwrap();
        let _ = answer(late).await;
        assert_eq!(r.metrics.shed.get(), 2);
    }

    #[tokio::test]
    async fn a_flooding_port_does_not_delay_a_quiet_one() {
        let r = rig(30, settings(4));
        let busy: Vec<_> = (0..40)
            .map(|s| r.dispatcher.submit("busy", r.job(s % SUBJECTS)).unwrap())
            .collect();
        tokio::time::sleep(Duration::from_millis(10)).await;
        let quiet = r.dispatcher.submit("quiet", r.job(50)).unwrap();
        let a = answer(quiet).await.unwrap();
        assert_eq!(a.candidates[0].subject, 50);
        // Served in the batch after the one running when it arrived, not
        // after all ten of the busy port's: by the time its answer is read,
        // at most the batch after it has started too.
        let batches_started = r.batches().len();
        assert!(batches_started <= 3, "{:?}", r.batches());
        assert!(a.queue_time < Duration::from_millis(70), "{a:?}");
        for rx in busy {
            answer(rx).await.unwrap();
        }
    }

    #[tokio::test]
    async fn an_engine_panic_fails_its_batch_and_the_dispatcher_goes_on() {
        let r = rig(1, settings(32));
        r.slow.panics_left.store(1, Ordering::SeqCst);
        let err = answer(r.dispatcher.submit("p", r.job(0)).unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable);
        let a = answer(r.dispatcher.submit("p", r.job(7)).unwrap())
            .await
            .unwrap();
        assert_eq!(a.candidates[0].subject, 7);
    }
}
