//! API keys on the wire: `authorization: Bearer TOKEN`, looked up in the
//! listener's keys file ([`facegate_core::keys`]). Keys suit callers that
//! cannot hold a certificate, or a deployment whose mesh terminates TLS;
//! certificates ([`super::certificate`]) are preferred (docs/security.md).

use std::sync::Arc;

use facegate_core::keys::KeyRing;
use tonic::Request;

use super::AuthError;

/// Whether the request carries a bearer token at all (a request with
/// neither token nor certificate is told what it lacks).
pub fn has_token<T>(req: &Request<T>) -> bool {
    req.metadata().contains_key("authorization")
}

/// The caller the request's bearer token names in `ring`; UNAUTHENTICATED
/// when there is none or it is unknown.
pub fn principal<T>(ring: &KeyRing, req: &Request<T>) -> Result<Arc<str>, AuthError> {
    let token = req
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(AuthError::KeyRequired)?;
    ring.identify(token.trim())
        .cloned()
        .ok_or(AuthError::UnknownKey)
}

#[cfg(test)]
mod tests {
    use super::*;
    use facegate_core::keys::new_key;

    #[test]
    fn a_known_token_names_its_owner_and_others_are_unauthenticated() {
        let (token, line) = new_key("JFK-T4");
        let ring = KeyRing::parse(&line).unwrap();
        let mut req = Request::new(());
        assert!(!has_token(&req));
        assert!(matches!(
            principal(&ring, &req),
            Err(AuthError::KeyRequired)
        ));
        req.metadata_mut()
            .insert("authorization", "Bearer nope".parse().unwrap());
        assert!(matches!(principal(&ring, &req), Err(AuthError::UnknownKey)));
        req.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        assert_eq!(&*principal(&ring, &req).unwrap(), "JFK-T4");
    }
}
