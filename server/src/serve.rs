//! Starts the gRPC servers, with a graceful drain on SIGTERM or Ctrl-C: the
//! ports' listener (Matcher, health, reflection) and, on its own address,
//! the back office's (GalleryAdmin, Manifests, health, reflection), so that
//! the ports' network path cannot reach the RPCs that change the gallery or
//! its manifests.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use facegate_core::Gallery;
use facegate_core::clock::Clock;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::Routes;
use tonic_health::server::HealthReporter;

use facegate_core::live::LiveGallery;

use crate::admin::AdminService;
use crate::audit::Auditor;
use crate::changes::GalleryChanges;
use crate::config::Settings;
use crate::credentials::{Credentials, ListenerCredentials};
use crate::encounters::ServedEncounters;
use crate::encounters::service::EncountersService;
use crate::engines::open_gpu;
use crate::manifests::ManifestsService;
use crate::matcher::MatcherService;
use crate::metrics::Metrics;
use crate::privacy::PrivacyService;
use crate::proto::encounters_server::EncountersServer;
use crate::proto::gallery_admin_server::GalleryAdminServer;
use crate::proto::manifests_server::ManifestsServer;
use crate::proto::matcher_server::MatcherServer;
use crate::proto::privacy_server::PrivacyServer;
use crate::scoped::ServedManifests;
use crate::served::ServedGallery;
use crate::{routes, tls};
use facegate_core::dirlock::DirLock;

/// Locks the data directory for this process alone, before anything in
/// it is opened: a second server on it is refused at start-up, naming the
/// process that holds it (`facegate_core::dirlock`). An audit directory
/// elsewhere (`--audit-dir`) is held by the audit trail's own lock.
fn lock_data_dir(settings: &Settings) -> anyhow::Result<DirLock> {
    DirLock::acquire(&settings.data_dir).context("locking the data directory")
}

/// Opens the gallery and the manifests, binds, serves until a shutdown
/// signal, then drains. `clock` is the time manifests' windows are judged
/// by: `SystemClock` in service; a test or simulation passes a
/// `ManualClock` and moves it (the server has no other notion of "now" for
/// manifests, and no test-only path).
pub async fn run(settings: Settings, clock: Arc<dyn Clock>) -> anyhow::Result<()> {
    // Settings built in code get the audit directory and checks that the
    // command line's get (resolving resolved settings changes nothing).
    let settings = settings.resolve()?;
    let _lock = lock_data_dir(&settings)?;
    let (path, live) = open_gallery(&settings).await?;
    let metrics = Metrics::new();
    let changes = open_changes(&live, &settings.data_dir, &metrics).await?;
    let gpu = open_gpu(&live, &settings).await?;
    let credentials = Arc::new(Credentials::load(&settings.credential_files(), &metrics)?);
    let policy = Arc::new(crate::retention::load(
        settings.retention_policy.as_deref(),
    )?);
    let manifests = open_manifests(&settings.data_dir, clock.clone()).await?;
    let encounters = open_encounters(&settings, clock.clone()).await?;
    credentials.watch_store(&encounters, &settings.store_tls(), &metrics);
    let auditor = open_audit_trail(&settings, &metrics, clock).await?;
    let state = Arc::new(
        ServedGallery::new(
            changes,
            gpu,
            settings.clone(),
            metrics.clone(),
            path.clone(),
            manifests,
            encounters,
        )
        .context("starting the dispatcher thread")?,
    );
    log_gallery_open(&path, &state, &settings);

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<MatcherServer<MatcherService>>().await;
    health
        .set_serving::<GalleryAdminServer<AdminService>>()
        .await;
    health
        .set_serving::<ManifestsServer<ManifestsService>>()
        .await;
    health
        .set_serving::<EncountersServer<EncountersService>>()
        .await;
    health.set_serving::<PrivacyServer<PrivacyService>>().await;
    let shared = routes::Shared {
        state: &state,
        auditor: &auditor,
        settings: &settings,
        credentials: &credentials,
        metrics: &metrics,
        policy: &policy,
    };
    let ports = routes::ports(&shared)?.add_service(health_service.clone());
    let back_office = routes::back_office(&shared, &live)?.add_service(health_service.clone());
    let probes = serve_health(settings.health_listen, Routes::new(health_service)).await?;
    let timers = spawn_timers(&state, &auditor, policy, &settings);
    let metrics_stop = start_metrics(settings.metrics_listen, metrics.clone()).await?;
    let signals = Signals::listen();
    let listeners = bind_listeners(&settings).await?;
    let drain = Duration::from_secs(settings.drain_seconds);
    let served = Served {
        ports,
        back_office,
        credentials,
        metrics,
    };
    serve_until_shutdown(listeners, served, &health, state, signals, drain).await?;
    for timer in timers.into_iter().chain(probes) {
        timer.abort();
    }
    let _ = metrics_stop.send(());
    tracing::info!("stopped");
    Ok(())
}

/// The background timers: manifest expiry, scheduled compaction and the
/// retention purge, each holding the state weakly; aborted at shutdown.
fn spawn_timers(
    state: &Arc<ServedGallery>,
    auditor: &Arc<Auditor>,
    policy: Arc<facegate_core::retention::RetentionPolicy>,
    settings: &Settings,
) -> Vec<tokio::task::JoinHandle<()>> {
    let every = |ms: u64| Duration::from_millis(ms);
    vec![
        tokio::spawn(purge_manifests(
            Arc::downgrade(state),
            every(settings.manifest_purge_interval_ms),
        )),
        tokio::spawn(crate::compaction::compact_on_timer(
            Arc::downgrade(state),
            every(settings.compaction_interval_ms),
        )),
        tokio::spawn(crate::retention::purge_on_timer(
            Arc::downgrade(state),
            auditor.clone(),
            policy,
            every(settings.retention_interval_ms),
        )),
    ]
}

/// The gallery file (the demo gallery, synthesised on first use, when none
/// is given) and the live gallery over it.
async fn open_gallery(settings: &Settings) -> anyhow::Result<(PathBuf, Arc<LiveGallery>)> {
    let path = match &settings.gallery {
        Some(p) => p.clone(),
        None => {
            let data_dir = settings.data_dir.clone();
            tokio::task::spawn_blocking(move || crate::demo::ensure_demo_gallery(&data_dir))
                .await??
        }
    };
    // A compaction that crashed left its whole gallery in the making, with
    // templates since erased from the gallery, beside the file.
    let gallery_path = path.clone();
    let swept = tokio::task::spawn_blocking(move || {
        facegate_core::format::remove_stale_temp_files(&gallery_path)
    })
    .await?;
    match swept {
        Ok(removed) if !removed.is_empty() => tracing::info!(
            files = removed.len(),
            "removed temporary galleries a crashed writer left"
        ),
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "a crashed writer's temporary gallery stays"),
    }
    // The gallery's errors name its file; the context does not repeat it.
    let gallery = Arc::new(Gallery::open(&path).context("opening the gallery")?);
    if let Some(shard) = settings.shard {
        let g = gallery.clone();
        let strangers = tokio::task::spawn_blocking(move || shard.strangers(&g)).await??;
        anyhow::ensure!(
            strangers == 0,
            "{} holds {strangers} subjects of shards other than {shard}: it is not this shard's \
             gallery (facegate-index shard writes STEM-K-of-N.fgal)",
            path.display()
        );
    }
    Ok((path, Arc::new(LiveGallery::new(gallery))))
}

/// The gallery's online changes: the change log under `data_dir`, replayed
/// onto the live gallery.
async fn open_changes(
    live: &Arc<LiveGallery>,
    data_dir: &Path,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Arc<GalleryChanges>> {
    let (live, dir, metrics) = (live.clone(), data_dir.to_path_buf(), metrics.clone());
    let changes =
        tokio::task::spawn_blocking(move || GalleryChanges::open(live, &dir, metrics)).await??;
    Ok(Arc::new(changes))
}

/// The shared encounter store when one is given, else the encounters
/// recorded under `data_dir/encounters` (opened now when its database
/// exists, else at the first record).
async fn open_encounters(
    settings: &Settings,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Arc<ServedEncounters>> {
    let (dir, shared) = (settings.data_dir.clone(), settings.encounter_store.clone());
    let tls = settings.store_tls();
    let encounters = tokio::task::spawn_blocking(move || match shared {
        Some(url) => ServedEncounters::connect(&url, &tls, clock),
        None => ServedEncounters::open(&dir, clock),
    })
    .await?
    .context("opening the encounter store")?;
    let timeout = Duration::from_millis(settings.encounter_record_timeout_ms);
    Ok(Arc::new(encounters.with_record_timeout(timeout)))
}

/// The manifests stored under `data_dir` (`manifests.db`, when it
/// exists), those whose window ended while the server was down purged, the
/// rest loaded.
async fn open_manifests(
    data_dir: &Path,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Arc<ServedManifests>> {
    let dir = data_dir.to_path_buf();
    let manifests = tokio::task::spawn_blocking(move || ServedManifests::open(&dir, clock))
        .await?
        .context("opening the manifests")?;
    tracing::info!(manifests = manifests.len(), "manifests open");
    Ok(Arc::new(manifests))
}

/// Every `every`, purges the manifests whose window has ended (from disk,
/// then memory), on the blocking pool; logs how many, never their
/// travellers. A failure is logged and retried at the next tick (ended
/// manifests are refused to searches meanwhile all the same). It holds the
/// state weakly and ends with it, so that a server run in-process and
/// dropped lets go of its manifest store (and the store's file lock).
async fn purge_manifests(state: std::sync::Weak<ServedGallery>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(state) = state.upgrade() else { return };
        let manifests = state.manifests().clone();
        let purged = tokio::task::spawn_blocking(move || manifests.purge_expired()).await;
        let metrics = state.metrics();
        match purged {
            Ok(Ok(ids)) if !ids.is_empty() => {
                metrics.manifest_expiries.inc_by(ids.len() as u64);
                tracing::info!(purged = ids.len(), "expired manifests purged");
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "purging expired manifests failed"),
            Err(e) => tracing::error!(error = %e, "the manifest purge task failed"),
        }
        metrics.manifests_live.set(state.manifests().len() as i64);
    }
}

/// The audit trail in the settings' audit directory, signed when they give
/// a key, or a disabled one (with a warning) when they turned it off.
async fn open_audit_trail(
    settings: &Settings,
    metrics: &Arc<Metrics>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Arc<Auditor>> {
    let auditor = match settings.audit_dir.as_deref() {
        Some(dir) => {
            let sealing = crate::audit::Sealing::from_settings(settings, clock.clone())?;
            let (dir, metrics) = (dir.to_path_buf(), metrics.clone());
            tokio::task::spawn_blocking(move || Auditor::open_sealed(&dir, metrics, sealing, clock))
                .await??
        }
        None => {
            tracing::warn!("--no-audit: searches and gallery changes are not audited");
            Auditor::disabled()
        }
    };
    Ok(Arc::new(auditor))
}

/// One line saying what is served, and how it is batched.
fn log_gallery_open(path: &Path, state: &ServedGallery, settings: &Settings) {
    let info = state.info();
    tracing::info!(
        gallery = %path.display(),
        rows = info.rows,
        subjects = info.subjects,
        dim = info.dimension,
        model_tag = %info.model_tag,
        generation = format!("{:016x}", info.generation),
        engine = %info.engine,
        default_threshold = info.default_threshold,
        threshold_source = info.threshold_source.name(),
        batch_max_size = settings.batch_max_size,
        batch_max_wait_us = settings.batch_max_wait_us,
        batch_time_target_ms = settings.batch_time_target_ms,
        "gallery open"
    );
}

/// Serves `/metrics` on its own listener (printing its address first)
/// until the returned sender fires or is dropped.
pub(crate) async fn start_metrics(
    addr: std::net::SocketAddr,
    metrics: Arc<Metrics>,
) -> anyhow::Result<oneshot::Sender<()>> {
    let listener = crate::metrics::bind(addr).await?;
    let addr = listener.local_addr()?;
    println!("facegate metrics on http://{addr}/metrics");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(crate::metrics::serve(listener, metrics, async {
        let _ = stopped.await;
    }));
    Ok(stop)
}

/// Serves `grpc.health.v1` alone, in plain text, on `addr` (when given),
/// for probes that cannot speak TLS; printed as "facegate health on ADDR".
/// The task is aborted at exit.
pub(crate) async fn serve_health(
    addr: Option<std::net::SocketAddr>,
    health: Routes,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(addr) = addr else { return Ok(None) };
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the health listener {addr}"))?;
    println!("facegate health on {}", listener.local_addr()?);
    let server = tonic::transport::Server::builder().add_routes(health);
    Ok(Some(tokio::spawn(async move {
        if let Err(e) = server.serve_with_incoming(no_delay(listener)).await {
            tracing::error!(error = %e, "the health listener failed");
        }
    })))
}

/// The two gRPC listeners, bound.
struct Listeners {
    /// The ports' listener (Matcher).
    ports: TcpListener,
    /// The back office's listener (GalleryAdmin).
    admin: TcpListener,
}

/// Binds both gRPC listeners and says where: tests and scripts read the
/// printed lines to find ephemeral ports, and the ports' listener comes
/// last and means ready.
async fn bind_listeners(settings: &Settings) -> anyhow::Result<Listeners> {
    let admin = TcpListener::bind(settings.admin_listen)
        .await
        .with_context(|| format!("binding the admin listener {}", settings.admin_listen))?;
    let admin_addr = admin.local_addr()?;
    let ports = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    let addr = ports.local_addr()?;
    println!("facegate admin listening on {admin_addr}");
    println!("facegate listening on {addr}");
    tracing::info!(
        %addr,
        %admin_addr,
        "serving facegate.v1.Matcher on addr, facegate.v1.GalleryAdmin and \
         facegate.v1.Manifests on admin_addr, grpc.health.v1 and reflection on both"
    );
    Ok(Listeners { ports, admin })
}

/// What the two listeners serve, and what they need to do it.
struct Served {
    /// The ports' listener's services.
    ports: Routes,
    /// The back office's listener's services.
    back_office: Routes,
    /// Both listeners' TLS and keys, re-read on SIGHUP.
    credentials: Arc<Credentials>,
    /// Refused handshakes are counted here.
    metrics: Arc<Metrics>,
}

/// Serves `routes` on `listener` until `stop` fires: over TLS when the
/// listener has TLS files, else in plain text.
pub(crate) async fn serve_listener(
    routes: Routes,
    listener: TcpListener,
    credentials: Arc<ListenerCredentials>,
    metrics: Arc<Metrics>,
    stop: oneshot::Receiver<()>,
) -> Result<(), tonic::transport::Error> {
    let server = tonic::transport::Server::builder().add_routes(routes);
    let stop = async {
        let _ = stop.await;
    };
    if credentials.has_tls() {
        let name = credentials.listener();
        let config: tls::incoming::CurrentConfig = Arc::new(move || credentials.tls_config());
        let incoming = tls::incoming::incoming(listener, name, config, metrics);
        server.serve_with_incoming_shutdown(incoming, stop).await
    } else {
        server
            .serve_with_incoming_shutdown(no_delay(listener), stop)
            .await
    }
}

/// Serves both listeners (reloading on SIGHUP) until either fails, which
/// stops both and the process, or a shutdown signal comes: then health
/// turns NOT_SERVING and both drain together, for up to `drain`.
async fn serve_until_shutdown(
    listeners: Listeners,
    served: Served,
    health: &HealthReporter,
    state: Arc<ServedGallery>,
    signals: Signals,
    drain: Duration,
) -> anyhow::Result<()> {
    let (stop_ports, ports_stopped) = oneshot::channel::<()>();
    let (stop_admin, admin_stopped) = oneshot::channel::<()>();
    let Served {
        ports,
        back_office,
        credentials,
        metrics,
    } = served;
    let ports = serve_listener(
        ports,
        listeners.ports,
        credentials.ports.clone(),
        metrics.clone(),
        ports_stopped,
    );
    let back_office = serve_listener(
        back_office,
        listeners.admin,
        credentials.admin.clone(),
        metrics,
        admin_stopped,
    );
    let mut server = tokio::spawn(async move {
        tokio::try_join!(
            async { ports.await.context("ports' listener failed") },
            async { back_office.await.context("admin listener failed") },
        )
        .map(|_| ())
    });
    #[cfg(unix)]
    let shutdown = {
        tokio::spawn(reload_on_sighup(state, credentials, signals.hangup));
        shutdown_requested(signals.terminate, signals.interrupt)
    };
    #[cfg(not(unix))]
    let shutdown = {
        let _ = (state, signals, credentials);
        shutdown_requested()
    };
    tokio::select! {
        r = &mut server => return r?,
        _ = shutdown => {}
    }
    tracing::info!("shutdown requested: draining in-flight requests");
    health
        .set_not_serving::<MatcherServer<MatcherService>>()
        .await;
    health
        .set_not_serving::<GalleryAdminServer<AdminService>>()
        .await;
    health
        .set_not_serving::<ManifestsServer<ManifestsService>>()
        .await;
    health
        .set_not_serving::<EncountersServer<EncountersService>>()
        .await;
    health
        .set_not_serving::<PrivacyServer<PrivacyService>>()
        .await;
    let _ = stop_ports.send(());
    let _ = stop_admin.send(());
    match tokio::time::timeout(drain, &mut server).await {
        Ok(r) => r?.context("server failed while draining")?,
        Err(_) => tracing::warn!(
            seconds = drain.as_secs(),
            "drain period over; exiting with requests in flight"
        ),
    }
    Ok(())
}

/// Accepted connections with Nagle's algorithm off: answers are small and
/// must leave at once (tonic does not apply `tcp_nodelay` to a listener it
/// did not bind), or a delayed ACK can hold one back for ~40 ms.
fn no_delay(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    TcpListenerStream::new(listener).map(|conn| {
        if let Ok(c) = &conn
            && let Err(e) = c.set_nodelay(true)
        {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        conn
    })
}

/// The signals the server acts on: SIGTERM and Ctrl-C drain it, SIGHUP
/// reloads the gallery. Listened for before the ready line, because until
/// a process listens for them they kill it: a supervisor's SIGTERM just
/// after the ready line would otherwise end the server without a drain.
pub(crate) struct Signals {
    #[cfg(unix)]
    pub(crate) terminate: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    pub(crate) interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    pub(crate) hangup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Starts listening; a signal that cannot be listened for is logged
    /// and keeps its default action.
    pub(crate) fn listen() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::SignalKind;
            Signals {
                terminate: listen_for(SignalKind::terminate(), "cannot listen for SIGTERM"),
                interrupt: listen_for(SignalKind::interrupt(), "cannot listen for Ctrl-C"),
                hangup: listen_for(
                    SignalKind::hangup(),
                    "cannot listen for SIGHUP: reload by RPC only",
                ),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }
}

#[cfg(unix)]
fn listen_for(
    kind: tokio::signal::unix::SignalKind,
    failure: &'static str,
) -> Option<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(kind)
        .inspect_err(|e| tracing::warn!(error = %e, "{failure}"))
        .ok()
}

/// On every SIGHUP, as the Reload RPC does: re-reads the listeners'
/// certificates, CA bundles and keys files and the shared store's TLS
/// files (a file refused keeps the old one, logged), then reloads the
/// gallery.
#[cfg(unix)]
async fn reload_on_sighup(
    state: Arc<ServedGallery>,
    credentials: Arc<Credentials>,
    hangup: Option<tokio::signal::unix::Signal>,
) {
    let Some(mut hup) = hangup else { return };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading credentials and the gallery");
        let credentials = credentials.clone();
        // Failures are logged by the reload itself.
        let _ = tokio::task::spawn_blocking(move || credentials.reload()).await;
        if let Err(e) = state.reload().await {
            tracing::error!(error = %e, "reload on SIGHUP failed");
        }
    }
}

/// Resolves at the first SIGTERM or Ctrl-C.
#[cfg(unix)]
pub(crate) async fn shutdown_requested(
    terminate: Option<tokio::signal::unix::Signal>,
    interrupt: Option<tokio::signal::unix::Signal>,
) {
    async fn next(signal: Option<tokio::signal::unix::Signal>) {
        match signal {
            Some(mut s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    }
    tokio::select! {
        _ = next(terminate) => {}
        _ = next(interrupt) => {}
    }
}

/// Resolves at the first Ctrl-C.
#[cfg(not(unix))]
pub(crate) async fn shutdown_requested() {
    let _ = tokio::signal::ctrl_c().await;
}
