//! The check every call of a service runs before its handler: who is
//! calling (the client certificate's identity, else the API key's name),
//! and whether that role may call this service. A refused call is counted
//! and logged with the caller's address and the reason, never its
//! credential; it reaches no handler.
//!
//! | credential presented            | listener has            | result                       |
//! |---------------------------------|-------------------------|------------------------------|
//! | verified client certificate     | a client CA             | its identity ([`certificate`]) |
//! | bearer token                    | a keys file             | the key's name, the listener's key role |
//! | neither                         | a client CA or keys     | UNAUTHENTICATED              |
//! | anything                        | neither                 | passes, no principal (warned at start-up) |
//!
//! A certificate wins over a token sent with it. A role the service does
//! not admit is PERMISSION_DENIED. A router's call (role `router`) names
//! the caller it forwards for in [`ON_BEHALF_OF`], which becomes the
//! principal; so does a forwarded name on a listener that authenticates no
//! one (its network is trusted: anyone on it could call in any name). From
//! any other caller the key is ignored.

use std::sync::Arc;

use tonic::{Request, Status};

use super::{AuthError, ON_BEHALF_OF, Principal, Role, bearer, certificate};
use crate::credentials::ListenerCredentials;
use crate::metrics::Metrics;

/// One service's gate on one listener.
#[derive(Clone)]
pub struct Gate {
    credentials: Arc<ListenerCredentials>,
    metrics: Arc<Metrics>,
    /// The role an API key of this listener gives its holder.
    key_role: Role,
    /// The roles this service admits.
    admits: &'static [Role],
    /// The service's name, for the refusal's message.
    service: &'static str,
}

impl Gate {
    /// The gate of `service` on the listener whose credentials are
    /// `credentials`, admitting `admits`; its API keys give `key_role`.
    pub fn new(
        credentials: Arc<ListenerCredentials>,
        metrics: Arc<Metrics>,
        key_role: Role,
        admits: &'static [Role],
        service: &'static str,
    ) -> Gate {
        Gate {
            credentials,
            metrics,
            key_role,
            admits,
            service,
        }
    }

    /// Authenticates and authorises `req`, recording its [`Principal`] on
    /// it; the refusal's status otherwise.
    pub fn check(&self, req: &mut Request<()>) -> Result<(), Status> {
        let checked = self.authenticate(req).and_then(|who| match who {
            Some((role, _)) if !self.admits.contains(&role) => Err(AuthError::RoleRefused {
                role: role.name(),
                service: self.service,
            }),
            Some((Role::Router, name)) => {
                let name = on_behalf_of(req).unwrap_or(name);
                req.extensions_mut().insert(Principal(name));
                Ok(())
            }
            Some((_, name)) => {
                req.extensions_mut().insert(Principal(name));
                Ok(())
            }
            None => {
                if let Some(name) = on_behalf_of(req) {
                    req.extensions_mut().insert(Principal(name));
                }
                Ok(())
            }
        });
        if let Err(refusal) = &checked {
            let listener = self.credentials.listener();
            self.metrics
                .auth_failures
                .with_label_values(&[listener])
                .inc();
            let peer = req.remote_addr().map(|a| a.to_string()).unwrap_or_default();
            tracing::warn!(listener, %peer, reason = %refusal, "call refused");
        }
        checked.map_err(Status::from)
    }

    /// The caller's role and name, `None` when the listener authenticates
    /// no one.
    fn authenticate(&self, req: &Request<()>) -> Result<Option<(Role, Arc<str>)>, AuthError> {
        if let Some(certs) = req.peer_certs()
            && let Some(leaf) = certs.first()
        {
            let id = certificate::identity(leaf)?;
            return Ok(Some((id.role, id.name)));
        }
        let verifies = self.credentials.verifies_clients();
        let Some(ring) = self.credentials.keys() else {
            return match verifies {
                true => Err(AuthError::CertificateRequired),
                false => Ok(None),
            };
        };
        if verifies && !bearer::has_token(req) {
            return Err(AuthError::CredentialRequired);
        }
        Ok(Some((self.key_role, bearer::principal(&ring, req)?)))
    }
}

/// The caller a router names in [`ON_BEHALF_OF`], when it names one.
fn on_behalf_of(req: &Request<()>) -> Option<Arc<str>> {
    let value = req.metadata().get(ON_BEHALF_OF)?.to_str().ok()?;
    (!value.is_empty()).then(|| Arc::from(value))
}
