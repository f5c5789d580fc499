//! Starts the gRPC servers, with a graceful drain on SIGTERM or Ctrl-C: the
//! ports' listener (Matcher, health, reflection) and, on its own address,
//! the enrolment back office's (GalleryAdmin, health, reflection), so that
//! the ports' network path cannot reach the RPCs that change the gallery.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use facegate_core::Gallery;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use facegate_core::live::{LiveGallery, MAX_TEMPLATES_PER_SUBJECT};

use crate::admin::AdminService;
use crate::auth::KeyRing;
use crate::changes::GalleryChanges;
use crate::config::Settings;
use crate::engines::open_gpu;
use crate::matcher::MatcherService;
use crate::proto::gallery_admin_server::GalleryAdminServer;
use crate::proto::matcher_server::MatcherServer;
use crate::state::ServingState;

/// Opens the gallery, binds, serves until a shutdown signal, then drains.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    // Settings built in code get the audit directory and checks that the
    // command line's get (resolving resolved settings changes nothing).
    let settings = settings.resolve()?;
    let path = match &settings.gallery {
        Some(p) => p.clone(),
        None => {
            let data_dir = settings.data_dir.clone();
            tokio::task::spawn_blocking(move || crate::demo::ensure_demo_gallery(&data_dir))
                .await??
        }
    };
    let gallery = Arc::new(
        Gallery::open(&path).with_context(|| format!("opening gallery {}", path.display()))?,
    );
    let metrics = crate::metrics::Metrics::new();
    let live = Arc::new(LiveGallery::new(gallery));
    let changes = {
        let (live, dir, metrics) = (live.clone(), settings.data_dir.clone(), metrics.clone());
        Arc::new(
            tokio::task::spawn_blocking(move || GalleryChanges::open(live, &dir, metrics))
                .await??,
        )
    };
    let gpu = open_gpu(&live, &settings).await?;
    let port_keys = key_check(settings.port_keys.as_deref(), "ports", &metrics)?;
    let admin_keys = key_check(settings.admin_keys.as_deref(), "admin", &metrics)?;
    // After what most often fails at start-up (the gallery, the engine, the
    // keys files), so that such a failure leaves no audit file behind; an
    // empty one, should binding fail later, is passed over at the next start.
    let auditor = Arc::new(match settings.audit_dir.clone() {
        Some(dir) => {
            let metrics = metrics.clone();
            tokio::task::spawn_blocking(move || crate::audit::Auditor::open(&dir, metrics))
                .await??
        }
        None => {
            tracing::warn!("--no-audit: searches and gallery changes are not audited");
            crate::audit::Auditor::disabled()
        }
    });
    let state = Arc::new(
        ServingState::new(
            changes,
            gpu,
            settings.clone(),
            metrics.clone(),
            path.clone(),
        )
        .context("starting the dispatcher thread")?,
    );
    let info = state.info();
    tracing::info!(
        gallery = %path.display(),
        rows = info.rows,
        subjects = info.subjects,
        dim = info.dimension,
        model_tag = %info.model_tag,
        generation = format!("{:016x}", info.generation),
        engine = %info.engine,
        batch_max_size = settings.batch_max_size,
        batch_max_wait_us = settings.batch_max_wait_us,
        batch_time_target_ms = settings.batch_time_target_ms,
        "gallery open"
    );

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<MatcherServer<MatcherService>>().await;
    health
        .set_serving::<GalleryAdminServer<AdminService>>()
        .await;
    // Each listener advertises only the services it serves.
    let reflection = |service: &str| {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name(service)
            .with_service_name("grpc.health.v1.Health")
            .build_v1()
            .context("building the reflection service")
    };
    let matcher = tonic::service::interceptor::InterceptedService::new(
        MatcherServer::new(MatcherService::new(state.clone(), auditor.clone()))
            .max_decoding_message_size(settings.max_message_bytes),
        move |mut req: tonic::Request<()>| {
            port_keys(&mut req)?;
            crate::deadline::stamp(req)
        },
    );
    // An enrolment carries up to 64 templates: allow for them whatever the
    // port-facing message limit is.
    let admin_message_bytes = settings
        .max_message_bytes
        .max(MAX_TEMPLATES_PER_SUBJECT * (live.dim() * 5 + 16) + 64 * 1024);
    let admin = tonic::service::interceptor::InterceptedService::new(
        GalleryAdminServer::new(AdminService::new(state.clone(), auditor))
            .max_decoding_message_size(admin_message_bytes),
        move |mut req: tonic::Request<()>| {
            admin_keys(&mut req)?;
            Ok(req)
        },
    );

    let metrics_listener = crate::metrics::bind(settings.metrics_listen).await?;
    let metrics_addr = metrics_listener.local_addr()?;
    println!("facegate metrics on http://{metrics_addr}/metrics");
    let (metrics_stop, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(crate::metrics::serve(metrics_listener, metrics, async {
        let _ = metrics_stopped.await;
    }));

    let admin_listener = TcpListener::bind(settings.admin_listen)
        .await
        .with_context(|| format!("binding the admin listener {}", settings.admin_listen))?;
    let admin_addr = admin_listener.local_addr()?;
    let listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    let addr = listener.local_addr()?;
    // Tests and scripts read these lines to find ephemeral ports; the
    // ports' listener comes last and means ready.
    println!("facegate admin listening on {admin_addr}");
    println!("facegate listening on {addr}");
    tracing::info!(
        %addr,
        %admin_addr,
        "serving facegate.v1.Matcher on addr, facegate.v1.GalleryAdmin on admin_addr, \
         grpc.health.v1 and reflection on both"
    );

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (admin_stop_tx, admin_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let ports = tonic::transport::Server::builder()
        .add_service(health_service.clone())
        .add_service(reflection("facegate.v1.Matcher")?)
        .add_service(matcher)
        .serve_with_incoming_shutdown(no_delay(listener), async {
            let _ = stop_rx.await;
        });
    let back_office = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection("facegate.v1.GalleryAdmin")?)
        .add_service(admin)
        .serve_with_incoming_shutdown(no_delay(admin_listener), async {
            let _ = admin_stop_rx.await;
        });
    // Either server failing stops both and the process; both drain together.
    let mut server = tokio::spawn(async move {
        tokio::try_join!(
            async { ports.await.context("ports' listener failed") },
            async { back_office.await.context("admin listener failed") },
        )
        .map(|_| ())
    });
    tokio::spawn(reload_on_sighup(state.clone()));
    tokio::select! {
        r = &mut server => return r?,
        _ = shutdown_signal() => {}
    }
    tracing::info!("shutdown requested: draining in-flight requests");
    health
        .set_not_serving::<MatcherServer<MatcherService>>()
        .await;
    health
        .set_not_serving::<GalleryAdminServer<AdminService>>()
        .await;
    let _ = stop_tx.send(());
    let _ = admin_stop_tx.send(());
    match tokio::time::timeout(Duration::from_secs(settings.drain_seconds), &mut server).await {
        Ok(r) => r?.context("server failed while draining")?,
        Err(_) => tracing::warn!(
            seconds = settings.drain_seconds,
            "drain period over; exiting with requests in flight"
        ),
    }
    let _ = metrics_stop.send(());
    tracing::info!("stopped");
    Ok(())
}

/// The key check one listener runs on every call before its handler, from
/// its keys file; with none, every call passes, and the server warns that
/// the listener's callers are whoever they say they are. A refused call is
/// counted and logged with the caller's address (nothing else): it never
/// reaches a handler or the audit trail.
fn key_check(
    path: Option<&std::path::Path>,
    listener: &'static str,
    metrics: &Arc<crate::metrics::Metrics>,
) -> anyhow::Result<impl Fn(&mut tonic::Request<()>) -> Result<(), tonic::Status> + Clone + use<>> {
    let keys = match path {
        Some(p) => Some(Arc::new(KeyRing::load(p)?)),
        None => {
            tracing::warn!(
                listener,
                "no API keys: this listener's calls are not authenticated"
            );
            None
        }
    };
    let metrics = metrics.clone();
    Ok(move |req: &mut tonic::Request<()>| {
        let Some(keys) = &keys else {
            return Ok(());
        };
        let checked = keys.authenticate(req);
        if let Err(status) = &checked {
            metrics.auth_failures.with_label_values(&[listener]).inc();
            let peer = req.remote_addr().map(|a| a.to_string()).unwrap_or_default();
            tracing::warn!(listener, %peer, reason = status.message(), "call refused: no valid API key");
        }
        checked
    })
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

/// Reloads the gallery on every SIGHUP, as the Reload RPC does.
async fn reload_on_sighup(state: Arc<ServingState>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP: reload by RPC only");
                return;
            }
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the gallery");
            if let Err(e) = state.reload().await {
                tracing::error!(error = %e, "reload on SIGHUP failed");
            }
        }
    }
    #[cfg(not(unix))]
    let _ = state;
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
