//! `facegate route`: a stateless router in front of a gallery split into
//! shards (`facegate-index shard`, each served by `facegate serve --shard
//! K/N` on one or more replicas). It serves the ports' API unchanged:
//! Identify fans out to one replica of every shard and merges the exact
//! top-k ([`search`], [`merge`]); Verify goes to the subject's shard;
//! gallery changes and manifests go to their shards' every replica
//! ([`back_office`]). It watches each replica's health ([`health`]), sends
//! to a healthy, lightly loaded one ([`fleet`]), retries UNAVAILABLE on
//! another and may hedge a slow one ([`call`]). It audits and counts every
//! answer as the server does, behind the same gates and TLS.

pub mod back_office;
pub mod call;
pub mod fleet;
pub mod health;
pub mod matcher;
pub mod merge;
pub mod metrics;
pub mod search;
pub mod settings;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use facegate_core::clock::Clock;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;
use tonic_health::server::HealthReporter;

use self::back_office::RouterBackOffice;
use self::fleet::Fleet;
use self::matcher::{Router, RouterMatcher};
use self::metrics::RouterMetrics;
use self::settings::RouteSettings;
use crate::audit::{Auditor, Sealing};
use crate::auth::Role;
use crate::auth::gate::Gate;
use crate::credentials::Credentials;
use crate::encounters::ServedEncounters;
use crate::encounters::service::EncountersService;
use crate::metrics::Metrics;
use crate::proto::encounters_server::EncountersServer;
use crate::proto::gallery_admin_server::GalleryAdminServer;
use crate::proto::manifests_server::ManifestsServer;
use crate::proto::matcher_server::MatcherServer;
use crate::proto::privacy_server::PrivacyServer;
use crate::routes::{gated, with_reflection};
use crate::serve::{Signals, serve_health, serve_listener, shutdown_requested, start_metrics};
use facegate_core::dirlock::DirLock;

/// Runs the router until SIGTERM or Ctrl-C, then drains. `clock` dates
/// the shared store's records and stays and the audit trail, as
/// [`crate::serve::run`]'s does a server's: `SystemClock` in service.
pub async fn run(settings: RouteSettings, clock: Arc<dyn Clock>) -> anyhow::Result<()> {
    settings.check()?;
    facegate_core::durable_dir::create_dir_all(&settings.data_dir)
        .with_context(|| format!("creating {}", settings.data_dir.display()))?;
    let _lock = DirLock::acquire(&settings.data_dir).context("locking the data directory")?;
    let metrics = Metrics::new();
    let credentials = Arc::new(Credentials::load(&settings.credential_files(), &metrics)?);
    let (router, watchers) = start_router(&settings, &metrics, clock).await?;
    if let Some(encounters) = &router.encounters {
        credentials.watch_store(encounters, &settings.store_tls(), &metrics);
    }
    let (health, health_service) = tonic_health::server::health_reporter();
    set_serving(&health, true).await;
    let ports = ports_routes(&router, &credentials, &metrics, &settings)?
        .add_service(health_service.clone());
    let back_office =
        back_office_routes(&router, &credentials, &metrics)?.add_service(health_service.clone());
    let probes = serve_health(settings.health_listen, Routes::new(health_service)).await?;
    let metrics_stop = start_metrics(settings.metrics_listen, metrics.clone()).await?;
    let signals = Signals::listen();
    let admin_listener = bind(settings.admin_listen, "admin").await?;
    let ports_listener = bind(settings.listen, "ports'").await?;
    println!(
        "facegate route admin listening on {}",
        admin_listener.local_addr()?
    );
    println!(
        "facegate route listening on {}",
        ports_listener.local_addr()?
    );
    let (stop_ports, ports_stopped) = oneshot::channel();
    let (stop_admin, admin_stopped) = oneshot::channel();
    let serving = tokio::spawn(serve_both(
        [
            (ports, ports_listener, ports_stopped),
            (back_office, admin_listener, admin_stopped),
        ],
        credentials.clone(),
        metrics.clone(),
    ));
    wait_for_shutdown(
        signals,
        credentials,
        serving,
        &health,
        (stop_ports, stop_admin),
        &settings,
    )
    .await?;
    drop(watchers);
    if let Some(p) = probes {
        p.abort();
    }
    let _ = metrics_stop.send(());
    tracing::info!("router stopped");
    Ok(())
}

/// The router's state: metrics, audit trail, the fleet with its health
/// already checked once, and its background tasks: the watchers that keep
/// checking that health and the audit trail's expiry under the retention
/// policy, in a set that aborts them all when dropped (on every way out
/// of [`run`], errors included).
async fn start_router(
    settings: &RouteSettings,
    metrics: &Arc<Metrics>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<(Arc<Router>, JoinSet<()>)> {
    let router_metrics = Arc::new(RouterMetrics::register(metrics.registry())?);
    router_metrics.init_shards(settings.shards);
    let policy = Arc::new(crate::retention::load(
        settings.retention_policy.as_deref(),
    )?);
    let auditor = Arc::new(open_audit(settings, metrics, clock.clone()).await?);
    let fleet = Arc::new(Fleet::new(settings)?);
    let encounters = open_encounters(settings, clock.clone()).await?;
    let interval = Duration::from_millis(settings.health_interval_ms.max(10));
    let mut watchers = JoinSet::new();
    health::watch(&fleet, &router_metrics, interval, &mut watchers).await;
    watchers.spawn(crate::retention::expire_audit_on_timer(
        auditor.clone(),
        clock,
        metrics.clone(),
        policy.clone(),
        Duration::from_millis(settings.retention_interval_ms),
    ));
    log_fleet(&fleet, settings);
    let router = Arc::new(Router {
        fleet,
        metrics: metrics.clone(),
        router_metrics,
        auditor,
        shard_timeout: Duration::from_millis(settings.shard_timeout_ms),
        hedge_after: settings.hedge_after_ms.map(Duration::from_millis),
        encounters,
        policy,
    });
    Ok((router, watchers))
}

/// The shared encounter store, when one is given; `clock` is the one its
/// stays and records are dated by.
async fn open_encounters(
    settings: &RouteSettings,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Option<Arc<ServedEncounters>>> {
    let Some(url) = settings.encounter_store.clone() else {
        return Ok(None);
    };
    let tls = settings.store_tls();
    let served = tokio::task::spawn_blocking(move || ServedEncounters::connect(&url, &tls, clock))
        .await?
        .context("opening the shared encounter store")?;
    let timeout = Duration::from_millis(settings.encounter_record_timeout_ms);
    Ok(Some(Arc::new(served.with_record_timeout(timeout))))
}

/// Serves the ports' and the back office's listeners (in that order in
/// `both`) until either fails or both are stopped.
async fn serve_both(
    both: [(Routes, TcpListener, oneshot::Receiver<()>); 2],
    credentials: Arc<Credentials>,
    metrics: Arc<Metrics>,
) -> Result<(), tonic::transport::Error> {
    let [
        (ports, ports_listener, ports_stopped),
        (admin, admin_listener, admin_stopped),
    ] = both;
    let (c, m) = (credentials, metrics);
    tokio::try_join!(
        serve_listener(
            ports,
            ports_listener,
            c.ports.clone(),
            m.clone(),
            ports_stopped
        ),
        serve_listener(admin, admin_listener, c.admin.clone(), m, admin_stopped),
    )
    .map(|_| ())
}

type Serving = tokio::task::JoinHandle<Result<(), tonic::transport::Error>>;

/// Reloads credentials on SIGHUP; on SIGTERM or Ctrl-C turns health
/// NOT_SERVING, stops both listeners and lets requests in flight finish
/// for up to the drain period.
async fn wait_for_shutdown(
    signals: Signals,
    credentials: Arc<Credentials>,
    mut serving: Serving,
    health: &HealthReporter,
    stops: (oneshot::Sender<()>, oneshot::Sender<()>),
    settings: &RouteSettings,
) -> anyhow::Result<()> {
    #[cfg(unix)]
    let shutdown = {
        if let Some(mut hup) = signals.hangup {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    tracing::info!("SIGHUP: reloading credentials");
                    let c = credentials.clone();
                    let _ = tokio::task::spawn_blocking(move || c.reload()).await;
                }
            });
        }
        shutdown_requested(signals.terminate, signals.interrupt)
    };
    #[cfg(not(unix))]
    let shutdown = {
        let _ = (signals, credentials);
        shutdown_requested()
    };
    tokio::select! {
        r = &mut serving => return r?.context("a listener failed"),
        _ = shutdown => {}
    }
    tracing::info!("shutdown requested: draining in-flight requests");
    set_serving(health, false).await;
    let _ = stops.0.send(());
    let _ = stops.1.send(());
    let drain = Duration::from_secs(settings.drain_seconds);
    if let Ok(r) = tokio::time::timeout(drain, serving).await {
        r?.context("a listener failed while draining")?;
    }
    Ok(())
}

async fn set_serving(health: &HealthReporter, serving: bool) {
    if serving {
        health.set_serving::<MatcherServer<RouterMatcher>>().await;
        health
            .set_serving::<GalleryAdminServer<RouterBackOffice>>()
            .await;
        health
            .set_serving::<ManifestsServer<RouterBackOffice>>()
            .await;
    } else {
        health
            .set_not_serving::<MatcherServer<RouterMatcher>>()
            .await;
        health
            .set_not_serving::<GalleryAdminServer<RouterBackOffice>>()
            .await;
        health
            .set_not_serving::<ManifestsServer<RouterBackOffice>>()
            .await;
    }
}

/// The ports' listener: the router's Matcher behind the ports' gate.
fn ports_routes(
    router: &Arc<Router>,
    credentials: &Arc<Credentials>,
    metrics: &Arc<Metrics>,
    settings: &RouteSettings,
) -> anyhow::Result<Routes> {
    let gate = Gate::new(
        credentials.ports.clone(),
        metrics.clone(),
        Role::Port,
        &[Role::Port],
        "facegate.v1.Matcher",
    );
    let matcher = InterceptedService::new(
        MatcherServer::new(RouterMatcher::new(router.clone()))
            .max_decoding_message_size(settings.max_message_bytes),
        move |mut req: tonic::Request<()>| {
            gate.check(&mut req)?;
            crate::deadline::stamp(req)
        },
    );
    with_reflection(Routes::new(matcher), &["facegate.v1.Matcher"])
}

/// The back office's listener: GalleryAdmin (enrolment offices and
/// operators), Manifests and Privacy (operators), as the server gates them.
fn back_office_routes(
    router: &Arc<Router>,
    credentials: &Arc<Credentials>,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Routes> {
    let gate = |admits: &'static [Role], service: &'static str| {
        let admin = credentials.admin.clone();
        gated(Gate::new(
            admin,
            metrics.clone(),
            Role::Operator,
            admits,
            service,
        ))
    };
    let service = RouterBackOffice::new(router.clone(), credentials.clone());
    let limit = 64 << 20;
    let admin = InterceptedService::new(
        GalleryAdminServer::new(service.clone()).max_decoding_message_size(limit),
        gate(
            &[Role::Enrolment, Role::Operator],
            "facegate.v1.GalleryAdmin",
        ),
    );
    let manifests = InterceptedService::new(
        ManifestsServer::new(service.clone()).max_decoding_message_size(limit),
        gate(&[Role::Operator], "facegate.v1.Manifests"),
    );
    let privacy = InterceptedService::new(
        PrivacyServer::new(service.clone()),
        gate(&[Role::Operator], "facegate.v1.Privacy"),
    );
    let mut names = vec![
        "facegate.v1.GalleryAdmin",
        "facegate.v1.Manifests",
        "facegate.v1.Privacy",
    ];
    let mut routes = Routes::new(admin)
        .add_service(manifests)
        .add_service(privacy);
    if let Some(encounters) = &router.encounters {
        let service = EncountersService::new(
            encounters.clone(),
            Arc::new(service),
            router.auditor.clone(),
            router.policy.clone(),
        );
        routes = routes.add_service(InterceptedService::new(
            EncountersServer::new(service),
            gate(&[Role::Operator], "facegate.v1.Encounters"),
        ));
        names.push("facegate.v1.Encounters");
    }
    with_reflection(routes, &names)
}

async fn open_audit(
    settings: &RouteSettings,
    metrics: &Arc<Metrics>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Auditor> {
    match settings.audit_dir() {
        Some(dir) => {
            let every = Duration::from_millis(settings.audit_seal_interval_ms);
            let key = settings.audit_signing_key.as_deref();
            let sealing = Sealing::load(key, settings.audit_seal_records, every, clock.clone())?;
            let metrics = metrics.clone();
            tokio::task::spawn_blocking(move || Auditor::open_sealed(&dir, metrics, sealing, clock))
                .await?
        }
        None => {
            tracing::warn!("--no-audit: the router audits nothing (the shards still do)");
            Ok(Auditor::disabled())
        }
    }
}

async fn bind(addr: std::net::SocketAddr, which: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {which} listener {addr}"))
}

fn log_fleet(fleet: &Fleet, settings: &RouteSettings) {
    let up = fleet.replicas().filter(|r| r.is_up()).count();
    tracing::info!(
        shards = settings.shards,
        replicas = settings.replicas.len(),
        up,
        listed = %fleet::describe(&settings.replicas),
        "routing"
    );
}
