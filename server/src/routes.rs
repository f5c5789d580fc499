//! The services each gRPC listener serves, each behind its [`Gate`]: the
//! ports' listener serves Matcher to ports; the back office's serves
//! GalleryAdmin to enrolment offices and operators, and Manifests,
//! Encounters and Privacy to operators. Each service's message limit is set
//! here, and both listeners offer health and reflection.

use std::sync::Arc;

use anyhow::Context;
use facegate_core::live::{LiveGallery, MAX_TEMPLATES_PER_SUBJECT};
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;

use crate::admin::AdminService;
use crate::audit::Auditor;
use crate::auth::Role;
use crate::auth::gate::Gate;
use crate::config::Settings;
use crate::credentials::Credentials;
use crate::encounters::service::EncountersService;
use crate::manifests::ManifestsService;
use crate::matcher::MatcherService;
use crate::metrics::Metrics;
use crate::privacy::PrivacyService;
use crate::proto::encounters_server::EncountersServer;
use crate::proto::gallery_admin_server::GalleryAdminServer;
use crate::proto::manifests_server::ManifestsServer;
use crate::proto::matcher_server::MatcherServer;
use crate::proto::privacy_server::PrivacyServer;
use crate::served::ServedGallery;

/// What the services share: the served state, the audit trail, the
/// settings, the credentials their gates check and the metrics they count
/// refusals in.
pub struct Shared<'a> {
    /// What is served.
    pub state: &'a Arc<ServedGallery>,
    /// Where every answer is recorded.
    pub auditor: &'a Arc<Auditor>,
    /// Message limits.
    pub settings: &'a Settings,
    /// Both listeners' certificates and keys.
    pub credentials: &'a Arc<Credentials>,
    /// Refusals are counted here.
    pub metrics: &'a Arc<Metrics>,
    /// The retention policy (the erasures the back office is told of).
    pub policy: &'a Arc<facegate_core::retention::RetentionPolicy>,
}

/// Who may call each service: a router forwards searches, gallery changes,
/// manifests and erasures for the callers it authenticated.
const PORT_ROLES: &[Role] = &[Role::Port, Role::Router];
const GALLERY_ADMIN_ROLES: &[Role] = &[Role::Enrolment, Role::Operator, Role::Router];
const FORWARDED_OPERATOR_ROLES: &[Role] = &[Role::Operator, Role::Router];
const OPERATOR_ONLY: &[Role] = &[Role::Operator];

impl Shared<'_> {
    fn port_gate(&self) -> Gate {
        let ports = self.credentials.ports.clone();
        Gate::new(
            ports,
            self.metrics.clone(),
            Role::Port,
            PORT_ROLES,
            "facegate.v1.Matcher",
        )
    }

    fn admin_gate(&self, admits: &'static [Role], service: &'static str) -> Gate {
        // An admin API key is an operator's: keys carry no role of their
        // own, and the back office had one key for everything before roles.
        let admin = self.credentials.admin.clone();
        Gate::new(admin, self.metrics.clone(), Role::Operator, admits, service)
    }
}

/// The ports' listener: Matcher, with reflection; the caller adds health.
pub fn ports(shared: &Shared) -> anyhow::Result<Routes> {
    let gate = shared.port_gate();
    let matcher = InterceptedService::new(
        MatcherServer::new(MatcherService::new(
            shared.state.clone(),
            shared.auditor.clone(),
        ))
        .max_decoding_message_size(shared.settings.max_message_bytes),
        move |mut req: tonic::Request<()>| {
            gate.check(&mut req)?;
            crate::deadline::stamp(req)
        },
    );
    with_reflection(Routes::new(matcher), &["facegate.v1.Matcher"])
}

/// The back office's services (GalleryAdmin, Manifests, Encounters,
/// Privacy), each behind its gate, with reflection listing them; the caller
/// adds health.
pub fn back_office(shared: &Shared, live: &LiveGallery) -> anyhow::Result<Routes> {
    let routes = Routes::new(admin_service(shared, live))
        .add_service(manifests_service(shared))
        .add_service(encounters_service(shared))
        .add_service(privacy_service(shared));
    with_reflection(
        routes,
        &[
            "facegate.v1.GalleryAdmin",
            "facegate.v1.Manifests",
            "facegate.v1.Encounters",
            "facegate.v1.Privacy",
        ],
    )
}

/// An interceptor that runs `gate` and passes the request on.
pub fn gated(gate: Gate) -> impl tonic::service::Interceptor + Clone + Send + Sync + 'static {
    move |mut req: tonic::Request<()>| {
        gate.check(&mut req)?;
        Ok(req)
    }
}

/// GalleryAdmin. An enrolment carries up to 64 templates: its message
/// limit allows for them whatever the ports' limit is.
fn admin_service(
    shared: &Shared,
    live: &LiveGallery,
) -> InterceptedService<
    GalleryAdminServer<AdminService>,
    impl tonic::service::Interceptor + Clone + Send + Sync + 'static,
> {
    let message_bytes = shared
        .settings
        .max_message_bytes
        .max(MAX_TEMPLATES_PER_SUBJECT * (live.dim() * 5 + 16) + 64 * 1024);
    let service = AdminService::new(
        shared.state.clone(),
        shared.auditor.clone(),
        shared.credentials.clone(),
    );
    InterceptedService::new(
        GalleryAdminServer::new(service).max_decoding_message_size(message_bytes),
        gated(shared.admin_gate(GALLERY_ADMIN_ROLES, "facegate.v1.GalleryAdmin")),
    )
}

/// Manifests. A staging may list up to `MAX_TRAVELLERS` ids of up to
/// `MAX_SUBJECT_ID_LEN` bytes: its message limit allows for them whatever
/// the ports' limit is.
fn manifests_service(
    shared: &Shared,
) -> InterceptedService<
    ManifestsServer<ManifestsService>,
    impl tonic::service::Interceptor + Clone + Send + Sync + 'static,
> {
    use facegate_core::format::MAX_SUBJECT_ID_LEN;
    use facegate_core::manifest::MAX_TRAVELLERS;
    let message_bytes = shared
        .settings
        .max_message_bytes
        .max(MAX_TRAVELLERS * (MAX_SUBJECT_ID_LEN + 3) + 64 * 1024);
    let service = ManifestsService::new(shared.state.clone(), shared.auditor.clone());
    InterceptedService::new(
        ManifestsServer::new(service).max_decoding_message_size(message_bytes),
        gated(shared.admin_gate(FORWARDED_OPERATOR_ROLES, "facegate.v1.Manifests")),
    )
}

/// Encounters (officers' decisions, reconciliation reports).
fn encounters_service(
    shared: &Shared,
) -> InterceptedService<
    EncountersServer<EncountersService>,
    impl tonic::service::Interceptor + Clone + Send + Sync + 'static,
> {
    let service = EncountersService::new(
        shared.state.encounters().clone(),
        shared.state.clone(),
        shared.auditor.clone(),
        shared.policy.clone(),
    );
    InterceptedService::new(
        EncountersServer::new(service).max_decoding_message_size(shared.settings.max_message_bytes),
        gated(shared.admin_gate(OPERATOR_ONLY, "facegate.v1.Encounters")),
    )
}

/// Privacy (erasure, retention reports).
fn privacy_service(
    shared: &Shared,
) -> InterceptedService<
    PrivacyServer<PrivacyService>,
    impl tonic::service::Interceptor + Clone + Send + Sync + 'static,
> {
    let service = PrivacyService::new(shared.state.clone(), shared.auditor.clone());
    InterceptedService::new(
        PrivacyServer::new(service).max_decoding_message_size(shared.settings.max_message_bytes),
        gated(shared.admin_gate(FORWARDED_OPERATOR_ROLES, "facegate.v1.Privacy")),
    )
}

/// `routes` with server reflection: `grpc.reflection.v1`, and the
/// `v1alpha` that clients written before v1 still ask for alone (older
/// grpcurl and grpc_cli, many language libraries). Both advertise only
/// `services` and health: each listener lists what it serves, and only that.
pub fn with_reflection(routes: Routes, services: &[&str]) -> anyhow::Result<Routes> {
    let builder = || {
        let mut b = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        for service in services {
            b = b.with_service_name(*service);
        }
        b.with_service_name("grpc.health.v1.Health")
    };
    let v1 = builder()
        .build_v1()
        .context("building the reflection service")?;
    let v1alpha = builder()
        .build_v1alpha()
        .context("building the v1alpha reflection service")?;
    Ok(routes.add_service(v1).add_service(v1alpha))
}
