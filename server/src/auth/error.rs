//! Why a caller was not let in, as one type: `crate::status` maps it to
//! UNAUTHENTICATED or PERMISSION_DENIED, and the gate logs and counts it.

use super::certificate::IdentityError;

/// A refused caller. The messages name what the caller must send or may
/// not do, never a key or a certificate's contents.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No bearer token where an API key is the only credential taken.
    #[error("an API key is required: send `authorization: Bearer TOKEN`")]
    KeyRequired,
    /// A bearer token the listener's keys file does not hold.
    #[error("unknown API key")]
    UnknownKey,
    /// A client certificate whose identity cannot be read.
    #[error(transparent)]
    Certificate(#[from] IdentityError),
    /// A listener that takes certificates only, called without one.
    #[error("a client certificate is required on this listener")]
    CertificateRequired,
    /// A listener that takes certificates or keys, called with neither.
    #[error("a client certificate or an API key is required")]
    CredentialRequired,
    /// A known caller whose role the service does not admit.
    #[error("a {role} may not call {service}")]
    RoleRefused {
        /// The caller's role.
        role: &'static str,
        /// The service called.
        service: &'static str,
    },
    /// A port claiming to capture for another port.
    #[error("capture.port_id is not the port this credential belongs to")]
    OtherPort,
}
