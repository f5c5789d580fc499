//! Who is calling, and what they may do: every call on the ports' and the
//! back office's listeners is authenticated by a client certificate
//! (mutual TLS, [`certificate`]) or an API key ([`bearer`]), checked
//! against the roles its service admits ([`gate`]), so that every search is
//! authorised and its audit record names a caller the server checked rather
//! than one the request claims.

pub mod bearer;
pub mod certificate;
mod error;
pub mod gate;

use std::sync::Arc;

pub use self::error::AuthError;
pub use facegate_core::keys::new_key;

/// The caller a request's credential names (a port id for a port, a person
/// or system for the back office), set on the request by [`gate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal(pub Arc<str>);

/// What a caller is, and so which services it may call: the ports search;
/// an enrolment office changes the gallery; an operator runs the back
/// office (manifests, encounters, privacy, reloads) as well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A border crossing point's system: Matcher.
    Port,
    /// An enrolment office: GalleryAdmin.
    Enrolment,
    /// The agency's back office: every back-office service.
    Operator,
    /// A router (`facegate route`) in front of shard servers: it
    /// authenticates the ports and offices itself and forwards their calls,
    /// naming the caller in [`ON_BEHALF_OF`], which a shard's gate takes as
    /// the call's principal.
    Router,
}

/// The metadata key in which a router names the caller it forwards for
/// (its own gate authenticated that caller), so that a shard authorises and
/// audits the port or office, not the router.
pub const ON_BEHALF_OF: &str = "facegate-on-behalf-of";

impl Role {
    /// The role as certificates and logs spell it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Port => "port",
            Role::Enrolment => "enrolment",
            Role::Operator => "operator",
            Role::Router => "router",
        }
    }

    /// The role a certificate's identity spells `text`, if any.
    pub fn parse(text: &str) -> Option<Role> {
        [Role::Port, Role::Enrolment, Role::Operator, Role::Router]
            .into_iter()
            .find(|r| r.name() == text)
    }
}

/// Refuses a request whose claimed port (`capture.port_id`) is not the port
/// its credential belongs to (`principal`): a key or certificate authorises
/// searches for its own port only. Requests without a credential (the
/// listener takes none) or without a claimed port pass.
pub fn authorise(principal: Option<&str>, claimed_port: &str) -> Result<(), AuthError> {
    match principal {
        Some(p) if !claimed_port.is_empty() && claimed_port != p => Err(AuthError::OtherPort),
        _ => Ok(()),
    }
}

/// Whether a caller whose credential names `principal` may search a
/// manifest staged for `manifest_port`: a port searches only its own
/// port's manifests. Without credentials (`None`) the port is not
/// authenticated, so there is nothing to check it against, and every
/// manifest may be searched, as every port may search the gallery.
pub fn may_search_manifest(principal: Option<&str>, manifest_port: &str) -> bool {
    principal.is_none_or(|p| p == manifest_port)
}
