//! The central encounter store: encounters, officers' decisions and
//! travellers' files in one PostgreSQL database that every node of a
//! scaled-out deployment shares (routers record, back offices report,
//! one node at a time purges), behind the same
//! [`facegate_core::encounter::EncounterStore`] interface as the embedded
//! SQLite store, which stays the single-node default.
//!
//! * [`store`]: [`PgEncounters`], the interface over a connection pool and
//!   a group-commit writer;
//! * `schema`: the tables and indexes, and versioned migrations safe to
//!   start on several nodes at once;
//! * `writer`, `group` and `records`: group commit, and a run of records
//!   written in a few statements (idempotent by `ON CONFLICT`);
//! * `reads`, `rows`, `erase`: the reports' queries, rows checked on the
//!   way back, and erasure;
//! * [`tls`]: TLS to the database, verified against the operator's CA, and
//!   `connector`: the connector new connections use, replaced on reload;
//! * [`local`]: a private server from the machine's PostgreSQL packages,
//!   for tests and benchmarks.
//!
//! Its own crate, so that what needs no shared database (the core, the
//! index tools) links no PostgreSQL client.

mod connector;
mod erase;
pub mod error;
mod group;
pub mod local;
mod reads;
mod records;
mod rows;
mod schema;
pub mod store;
pub mod tls;
mod writer;

pub use error::Location;
pub use local::LocalPostgres;
pub use store::PgEncounters;
pub use tls::{StoreTls, StoreTlsError};
pub use writer::MAX_GROUP;
