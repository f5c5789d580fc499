//! Drives one load step against a server: closed loop (each port waits for
//! its answer before the next capture) or open loop (Poisson arrivals that do
//! not wait for the server), and records every answer.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use facegate_api::v1::matcher_client::MatcherClient;
use facegate_api::v1::{CaptureContext, Direction, IdentifyRequest, IdentifyResponse, SearchScope};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp};
use tonic::transport::Channel;

use super::probes::Probes;
use super::stats::{Class, Outcome, Recorder, RunSetup, RunStats};
use super::target::Target;

/// Time allowed, beyond the deadline, for the last requests of an open-loop
/// step to finish before the step is reported as broken.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// How port ids are assigned to open-loop arrivals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Spread {
    /// Arrival i comes from port i mod N: every port offers the same load.
    RoundRobin,
    /// Each arrival from a uniformly random port.
    Random,
}

/// The arrival process of a step.
#[derive(Debug, Clone, Copy)]
pub enum Load {
    /// `ports` ports, each sending its next request when its answer arrives.
    Closed {
        /// Concurrent ports.
        ports: usize,
    },
    /// Poisson arrivals at `rate` per second, whatever the server does.
    Open {
        /// Offered requests per second.
        rate: f64,
        /// Distinct port ids the arrivals come from.
        ports: usize,
        /// In-flight requests beyond which arrivals are dropped (counted),
        /// so that an overloaded server cannot exhaust the client.
        max_outstanding: usize,
        /// How arrivals are given port ids.
        spread: Spread,
    },
}

/// When the measured part of a step ends.
#[derive(Debug, Clone, Copy)]
pub enum Bound {
    /// After this long (closed loop: requests sent before then; open loop:
    /// arrivals scheduled before then).
    Duration(Duration),
    /// After this many requests (open loop: arrivals, dropped ones included).
    Requests(u64),
}

/// Everything one step needs besides the server and the probes.
#[derive(Debug, Clone)]
pub struct StepOptions {
    /// Arrival process.
    pub load: Load,
    /// Measured window.
    pub bound: Bound,
    /// Load applied before the window and not recorded (connections, caches
    /// and the server's thread pools warm up).
    pub warmup: Duration,
    /// gRPC deadline of every request.
    pub deadline: Duration,
    /// Candidates asked for.
    pub top_k: u32,
    /// Written into the stats, to compare runs.
    pub label: String,
    /// Seed of the arrival times and random port choice.
    pub seed: u64,
    /// Print a progress line on stderr every second.
    pub progress: bool,
    /// Ask the server to record each request as an encounter (an entry at
    /// the request's port, with an encounter id unique to the run), as a
    /// port recording every crossing does.
    pub record_encounters: bool,
}

/// The manifest a scoped request names, and whether it asks for the
/// national search when the manifest gives no match.
#[derive(Debug, Clone)]
struct ManifestScope {
    id: String,
    fallback: bool,
}

/// What every request task of one class shares.
struct Ctx {
    clients: Vec<MatcherClient<Channel>>,
    port_ids: Vec<String>,
    probes: Probes,
    model_tag: String,
    top_k: u32,
    deadline: Duration,
    /// None: national 1:N requests.
    scope: Option<ManifestScope>,
    /// Each request asks for its encounter to be recorded, with an id made
    /// of this prefix, its port and its sequence number.
    record_as: Option<String>,
    recorder: Mutex<Recorder>,
    in_flight: AtomicUsize,
}

impl Ctx {
    /// The shared state of one class of requests to `target`, sent from
    /// `port_ids`, with the probes, top-k and deadline of `opts`.
    fn new(
        target: &Target,
        probes: &Probes,
        port_ids: Vec<String>,
        scope: Option<ManifestScope>,
        opts: &StepOptions,
    ) -> anyhow::Result<Arc<Ctx>> {
        let info = target.info();
        anyhow::ensure!(
            probes.dim() == info.dimension as usize,
            "probes have {} floats, the server's gallery has dimension {}",
            probes.dim(),
            info.dimension
        );
        anyhow::ensure!(!port_ids.is_empty(), "at least one port is needed");
        Ok(Arc::new(Ctx {
            clients: target.clients().to_vec(),
            port_ids,
            probes: probes.clone(),
            model_tag: info.model_tag.clone(),
            top_k: opts.top_k,
            deadline: opts.deadline,
            scope,
            record_as: opts.record_encounters.then(|| {
                let nanos = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos());
                format!("{}-{nanos:x}", opts.label)
            }),
            recorder: Mutex::new(Recorder::new()?),
            in_flight: AtomicUsize::new(0),
        }))
    }

    /// One Identify from `port` with probe number `seq`, how it ended, and
    /// the retry pushback the server attached to a refusal.
    async fn identify(&self, port: usize, seq: u64) -> (Outcome, Option<Duration>) {
        let captured_at_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let (manifest_id, fallback) = self
            .scope
            .as_ref()
            .map_or((String::new(), false), |m| (m.id.clone(), m.fallback));
        let mut req = tonic::Request::new(IdentifyRequest {
            probe: self.probes.cycle(seq).to_vec(),
            top_k: self.top_k,
            threshold: None,
            request_id: format!("load-{seq}"),
            model_tag: self.model_tag.clone(),
            manifest_id,
            fallback,
            accept_partial: false,
            capture: Some(CaptureContext {
                port_id: self.port_ids[port].clone(),
                lane: "1".into(),
                direction: Direction::Entry as i32,
                captured_at_unix_ms,
                record: self.record_as.is_some(),
                encounter_id: self
                    .record_as
                    .as_ref()
                    .map_or_else(String::new, |p| format!("{p}-{port}-{seq}")),
                ..Default::default()
            }),
        });
        req.set_timeout(self.deadline);
        let mut client = self.clients[port % self.clients.len()].clone();
        match client.identify(req).await {
            Ok(r) if self.answered_as_asked(r.get_ref()) => (Outcome::Ok, None),
            Ok(_) => (Outcome::WrongScope, None),
            Err(s) => (Outcome::of_status(&s), facegate_api::pushback::of(&s)),
        }
    }

    /// Whether the search that answered is the one this class asks for
    /// (national requests are not checked: every server answers them so).
    fn answered_as_asked(&self, r: &IdentifyResponse) -> bool {
        match &self.scope {
            None => true,
            Some(m) => {
                r.manifest_id == m.id
                    && (r.answered_by() == SearchScope::Manifest
                        || (m.fallback && r.answered_by() == SearchScope::ManifestThenNational))
            }
        }
    }

    fn recorder(&self) -> std::sync::MutexGuard<'_, Recorder> {
        // A panicked recorder holder left only counters behind: still valid.
        self.recorder.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Decrements the in-flight count however the request task ends.
struct InFlight(Arc<Ctx>);

impl InFlight {
    fn new(ctx: Arc<Ctx>) -> InFlight {
        ctx.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(ctx)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The id of simulated port `i`, as sent in `CaptureContext.port_id`.
pub fn port_id(i: usize) -> String {
    format!("port-{i:04}")
}

/// Runs one load step and returns its figures.
pub async fn run_step(
    target: &Target,
    probes: &Probes,
    opts: &StepOptions,
) -> anyhow::Result<RunStats> {
    let ctx = Ctx::new(target, probes, port_ids(opts.load), None, opts)?;
    let measured = drive(&ctx, opts, opts.label.clone()).await?;
    Ok(finish(&ctx, target, opts, Class::National, measured))
}

/// What scoped requests search and send: one manifest, from one port (a
/// boarding gate, whose captures are of the manifest's travellers).
#[derive(Debug, Clone)]
pub struct ScopedRequests {
    /// The manifest searched (`IdentifyRequest.manifest_id`).
    pub manifest_id: String,
    /// The gate's `CaptureContext.port_id`: the manifest's port.
    pub port_id: String,
    /// Ask for the national search when the manifest gives no match
    /// (`IdentifyRequest.fallback`); such requests then do queue for it.
    pub fallback: bool,
    /// The captures sent, in turn.
    pub probes: Probes,
}

/// National load sent beside scoped requests.
#[derive(Clone, Copy)]
pub struct National<'a> {
    /// Its server (the same as the scoped requests', on other connections).
    pub target: &'a Target,
    /// Its probes.
    pub probes: &'a Probes,
    /// Its arrivals.
    pub load: Load,
}

/// What a scoped step measured, each class recorded apart.
#[derive(Debug, Clone, PartialEq)]
pub struct ScopedStepStats {
    /// The national load beside the scoped requests, when there was one.
    pub national: Option<RunStats>,
    /// The scoped requests.
    pub scoped: RunStats,
}

impl ScopedStepStats {
    /// The runs as table rows: national (if any) first, then scoped.
    pub fn into_runs(self) -> Vec<RunStats> {
        self.national.into_iter().chain([self.scoped]).collect()
    }
}

/// Runs one step of `scoped` requests to `target` (facegate-load gives them
/// a connection of their own, as a gate's link would be), sent as
/// `opts.load` (every one from the gate's port), either alone or beside `national`
/// load over the same warm-up and window, and records the two classes
/// apart: whether scoped requests wait behind national batches shows as the
/// difference between the scoped figures of the two kinds of step. The
/// national load has `opts`' deadline and top-k, and draws its arrival
/// times from seed `opts.seed + 1`, so that two open loops are not in
/// step. The window must be a duration: a count of requests would end the
/// two classes at different times.
pub async fn run_scoped_step(
    target: &Target,
    scoped: &ScopedRequests,
    opts: &StepOptions,
    national: Option<National<'_>>,
) -> anyhow::Result<ScopedStepStats> {
    anyhow::ensure!(
        matches!(opts.bound, Bound::Duration(_)),
        "a step with scoped requests is bounded by a duration, not a request count"
    );
    let scope = ManifestScope {
        id: scoped.manifest_id.clone(),
        fallback: scoped.fallback,
    };
    let gate = vec![scoped.port_id.clone(); port_ids(opts.load).len()];
    let sctx = Ctx::new(target, &scoped.probes, gate, Some(scope), opts)?;
    let scoped_run = drive(&sctx, opts, format!("{} scoped", opts.label));
    let (national, scoped_window) = match national {
        None => (None, scoped_run.await?),
        Some(n) => {
            let nopts = StepOptions {
                load: n.load,
                seed: opts.seed.wrapping_add(1),
                ..opts.clone()
            };
            let nctx = Ctx::new(n.target, n.probes, port_ids(n.load), None, &nopts)?;
            let national_run = drive(&nctx, &nopts, format!("{} national", opts.label));
            let (nw, sw) = tokio::join!(national_run, scoped_run);
            let nw = nw.context("the national load")?;
            let stats = finish(&nctx, n.target, &nopts, Class::National, nw);
            (Some(stats), sw?)
        }
    };
    let scoped = finish(&sctx, target, opts, Class::Scoped, scoped_window);
    Ok(ScopedStepStats { national, scoped })
}

/// The port ids of `load`'s ports.
fn port_ids(load: Load) -> Vec<String> {
    let ports = match load {
        Load::Closed { ports } | Load::Open { ports, .. } => ports,
    };
    (0..ports).map(port_id).collect()
}

/// Sends `opts.load` through `ctx` for one step, printing progress under
/// `label` when asked; returns the measured window.
async fn drive(ctx: &Arc<Ctx>, opts: &StepOptions, label: String) -> anyhow::Result<Duration> {
    let progress = opts
        .progress
        .then(|| tokio::spawn(report_progress(ctx.clone(), label)));
    let measured = match opts.load {
        Load::Closed { ports } => closed(ctx, ports, opts).await,
        Load::Open {
            rate,
            ports,
            max_outstanding,
            spread,
        } => open(ctx, rate, ports, max_outstanding, spread, opts).await,
    };
    if let Some(p) = progress {
        p.abort();
    }
    measured
}

/// The figures of `ctx`'s requests, sent as `opts.load`, over `measured`.
fn finish(
    ctx: &Ctx,
    target: &Target,
    opts: &StepOptions,
    class: Class,
    measured: Duration,
) -> RunStats {
    let (mode, ports, offered_rate) = match opts.load {
        Load::Closed { ports } => ("closed", ports, None),
        Load::Open { rate, ports, .. } => ("open", ports, Some(rate)),
    };
    let info = target.info();
    let setup = RunSetup {
        label: opts.label.clone(),
        class,
        mode: mode.into(),
        ports,
        connections: target.clients().len(),
        offered_rate,
        top_k: opts.top_k,
        deadline_ms: opts.deadline.as_millis() as u64,
        engine: info.engine.clone(),
        gallery_rows: info.rows,
    };
    ctx.recorder().finish(setup, measured)
}

/// Closed loop; returns the measured window: from the end of warm-up to the
/// last answer of a measured request.
async fn closed(ctx: &Arc<Ctx>, ports: usize, opts: &StepOptions) -> anyhow::Result<Duration> {
    let start = Instant::now() + opts.warmup;
    let seq = Arc::new(AtomicU64::new(0));
    let measured_sent = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for port in 0..ports {
        let (ctx, seq, measured_sent, bound) =
            (ctx.clone(), seq.clone(), measured_sent.clone(), opts.bound);
        tasks.spawn(async move {
            let mut last = start;
            loop {
                let sent_at = Instant::now();
                let measured = sent_at >= start;
                if measured {
                    let done = match bound {
                        Bound::Duration(d) => sent_at >= start + d,
                        Bound::Requests(n) => measured_sent.fetch_add(1, Ordering::SeqCst) >= n,
                    };
                    if done {
                        return last;
                    }
                }
                let _in_flight = InFlight::new(ctx.clone());
                let (outcome, pushback) = ctx
                    .identify(port, seq.fetch_add(1, Ordering::Relaxed))
                    .await;
                let now = Instant::now();
                if measured {
                    ctx.recorder().record(outcome, now - sent_at);
                    last = now;
                }
                // A port told to wait does, as gRPC's retry policy would:
                // resending at once makes every refusal another.
                if let Some(wait) = pushback {
                    tokio::time::sleep(wait).await;
                }
            }
        });
    }
    let mut last = start;
    while let Some(r) = tasks.join_next().await {
        last = last.max(r.context("a port task failed")?);
    }
    Ok(last.saturating_duration_since(start))
}

/// Open loop; returns the measured window: the span of measured arrivals.
async fn open(
    ctx: &Arc<Ctx>,
    rate: f64,
    ports: usize,
    max_outstanding: usize,
    spread: Spread,
    opts: &StepOptions,
) -> anyhow::Result<Duration> {
    anyhow::ensure!(
        rate.is_finite() && rate > 0.0,
        "the arrival rate must be positive, got {rate}"
    );
    let gaps = Exp::new(rate).context("inter-arrival distribution")?;
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let start = Instant::now() + opts.warmup;
    let mut next = Instant::now();
    let (mut seq, mut arrivals, mut last) = (0u64, 0u64, start);
    loop {
        next += Duration::from_secs_f64(gaps.sample(&mut rng));
        let measured = next >= start;
        if measured {
            let done = match opts.bound {
                Bound::Duration(d) => next >= start + d,
                Bound::Requests(n) => arrivals >= n,
            };
            if done {
                break;
            }
            arrivals += 1;
            last = next;
        }
        // Late arrivals (timer granularity, a busy client) go at once; their
        // latency still counts from the scheduled time, so none is hidden.
        if next > Instant::now() {
            tokio::time::sleep_until(next.into()).await;
        }
        if ctx.in_flight.load(Ordering::SeqCst) >= max_outstanding {
            if measured {
                ctx.recorder().record_dropped();
            }
            continue;
        }
        let port = match spread {
            Spread::RoundRobin => (seq % ports as u64) as usize,
            Spread::Random => rng.random_range(0..ports),
        };
        let in_flight = InFlight::new(ctx.clone());
        let (ctx, scheduled, this) = (ctx.clone(), next, seq);
        tokio::spawn(async move {
            let _in_flight = in_flight;
            // Arrivals are independent of answers here: a pushback changes
            // nothing about when the next one comes.
            let (outcome, _pushback) = ctx.identify(port, this).await;
            if measured {
                ctx.recorder().record(outcome, scheduled.elapsed());
            }
        });
        seq += 1;
    }
    // Every request ends by its deadline (the client's timer enforces it).
    let give_up = Instant::now() + opts.deadline + DRAIN_GRACE;
    while ctx.in_flight.load(Ordering::SeqCst) > 0 {
        anyhow::ensure!(
            Instant::now() < give_up,
            "{} requests still unanswered {:?} after their deadline",
            ctx.in_flight.load(Ordering::SeqCst),
            DRAIN_GRACE
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(match opts.bound {
        Bound::Duration(d) => d,
        Bound::Requests(_) => last.saturating_duration_since(start),
    })
}

/// Prints one line a second on stderr while a step runs.
async fn report_progress(ctx: Arc<Ctx>, label: String) {
    let t0 = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let line = ctx.recorder().progress_line();
        eprintln!(
            "[{label}] {:>4.0}s  {line}  in flight {}",
            t0.elapsed().as_secs_f64(),
            ctx.in_flight.load(Ordering::SeqCst)
        );
    }
}

/// Runs open-loop steps at each rate in turn (same options otherwise): the
/// latency-against-offered-load curve.
pub async fn run_sweep(
    target: &Target,
    probes: &Probes,
    rates: &[f64],
    opts: &StepOptions,
) -> anyhow::Result<Vec<RunStats>> {
    let mut out = Vec::with_capacity(rates.len());
    for &rate in rates {
        let load = match opts.load {
            Load::Open {
                ports,
                max_outstanding,
                spread,
                ..
            } => Load::Open {
                rate,
                ports,
                max_outstanding,
                spread,
            },
            Load::Closed { .. } => anyhow::bail!("a sweep varies an open-loop rate"),
        };
        let step = StepOptions {
            load,
            ..opts.clone()
        };
        out.push(
            run_step(target, probes, &step)
                .await
                .with_context(|| format!("step at {rate} requests/s"))?,
        );
    }
    Ok(out)
}
