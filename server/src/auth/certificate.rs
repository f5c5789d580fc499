//! The identity a client certificate carries: one URI subject alternative
//! name of the form
//!
//! ```text
//! spiffe://TRUST-DOMAIN/facegate/ROLE/NAME
//! ```
//!
//! where ROLE is `port`, `enrolment` or `operator` ([`Role`]) and NAME the
//! port id (`JFK-T4`) or the office or system's name. A SPIFFE ID, so that
//! a service mesh's workload certificates (Istio, SPIRE) can name facegate
//! callers without a second scheme; the trust domain is whatever the CA
//! issues, since the CA bundle configured for the listener is what is
//! trusted. DNS names are not used: they name hosts, not roles, and a
//! port's host may change while its identity does not.
//!
//! The chain, validity dates and signature were checked by TLS before a
//! call gets here; this only reads the name.

use std::sync::Arc;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::Role;

/// The scheme and the first path segment every facegate identity has.
const PREFIX: &str = "spiffe://";
const APP_SEGMENT: &str = "facegate";

/// Who a verified client certificate says its holder is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertIdentity {
    /// What the holder may call.
    pub role: Role,
    /// The port id or the office or system's name.
    pub name: Arc<str>,
}

/// Why a verified certificate names no usable identity: the call is
/// refused as unauthenticated with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The DER does not parse as X.509 (TLS accepted it, so this is rare).
    #[error("the client certificate cannot be read")]
    Unreadable,
    /// No URI SAN of the form `spiffe://DOMAIN/facegate/ROLE/NAME`.
    #[error(
        "the client certificate names no facegate identity \
         (a URI SAN spiffe://DOMAIN/facegate/ROLE/NAME)"
    )]
    None,
    /// Two or more such names: which one is meant cannot be told.
    #[error("the client certificate names more than one facegate identity")]
    Several,
}

/// The identity in the certificate's DER, as described in the module.
pub fn identity(der: &[u8]) -> Result<CertIdentity, IdentityError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|_| IdentityError::Unreadable)?;
    let sans = cert
        .subject_alternative_name()
        .map_err(|_| IdentityError::Unreadable)?;
    let mut found = sans
        .iter()
        .flat_map(|ext| ext.value.general_names.iter())
        .filter_map(|name| match name {
            GeneralName::URI(uri) => parse_uri(uri),
            _ => None,
        });
    let first = found.next().ok_or(IdentityError::None)?;
    if found.next().is_some() {
        return Err(IdentityError::Several);
    }
    Ok(first)
}

/// The identity a URI spells, or `None` when it is not a facegate one: a
/// known role, and a name of letters, digits, `.`, `_` and `-` (as port
/// ids are), 1 to 64 of them.
pub fn parse_uri(uri: &str) -> Option<CertIdentity> {
    let path = uri.strip_prefix(PREFIX)?;
    let mut segments = path.split('/');
    let (Some(domain), Some(app), Some(role), Some(name), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return None;
    };
    let name_ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if domain.is_empty() || app != APP_SEGMENT || !name_ok {
        return None;
    }
    Some(CertIdentity {
        role: Role::parse(role)?,
        name: Arc::from(name),
    })
}

/// The URI SAN a certificate for `role` and `name` carries in
/// `trust_domain` (what an issuing CA puts in; the tests and docs use it).
pub fn uri(trust_domain: &str, role: Role, name: &str) -> String {
    format!(
        "{PREFIX}{trust_domain}/{APP_SEGMENT}/{}/{name}",
        role.name()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_facegate_uris_name_an_identity() {
        let id = parse_uri("spiffe://border.example/facegate/port/JFK-T4").unwrap();
        assert_eq!((id.role, &*id.name), (Role::Port, "JFK-T4"));
        assert_eq!(
            parse_uri(&uri("b.example", Role::Operator, "ops-1")).map(|i| i.role),
            Some(Role::Operator)
        );
        for bad in [
            "https://border.example/facegate/port/JFK-T4",
            "spiffe:///facegate/port/JFK-T4",
            "spiffe://border.example/other/port/JFK-T4",
            "spiffe://border.example/facegate/admin/JFK-T4",
            "spiffe://border.example/facegate/port/",
            "spiffe://border.example/facegate/port/JFK T4",
            "spiffe://border.example/facegate/port/JFK-T4/extra",
        ] {
            assert_eq!(parse_uri(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_certificate_names_its_one_identity() {
        let make = |uris: &[&str]| {
            let mut params = rcgen::CertificateParams::new(vec!["client.example".into()]).unwrap();
            for u in uris {
                params.subject_alt_names.push(rcgen::SanType::URI(
                    rcgen::string::Ia5String::try_from(*u).unwrap(),
                ));
            }
            let key = rcgen::KeyPair::generate().unwrap();
            params.self_signed(&key).unwrap().der().to_vec()
        };
        let one = make(&["spiffe://b.example/facegate/enrolment/LHR-office"]);
        let id = identity(&one).unwrap();
        assert_eq!((id.role, &*id.name), (Role::Enrolment, "LHR-office"));
        assert_eq!(identity(&make(&[])), Err(IdentityError::None));
        assert_eq!(
            identity(&make(&[
                "spiffe://b.example/facegate/port/A",
                "spiffe://b.example/facegate/port/B"
            ])),
            Err(IdentityError::Several)
        );
        assert_eq!(identity(b"not der"), Err(IdentityError::Unreadable));
    }
}
