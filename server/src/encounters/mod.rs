//! Encounters on the wire: recording on the request path ([`recording`]),
//! the back office's `facegate.v1.Encounters` service ([`service`]) and the
//! conversions between the wire and the domain ([`wire`]). The store itself
//! is `crate::served_encounters`, a leaf the serving state holds.

pub mod recording;
pub mod service;
pub mod wire;

pub use crate::served_encounters::ServedEncounters;
