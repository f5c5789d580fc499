//! The server's integration tests: the real `facegate` binary (or
//! `serve::run` in this process) over real sockets, files and databases.
//! One test binary, with a module a subject, so that the server is linked
//! into tests once rather than once a file (CI time). `settings.rs` stays
//! a binary of its own: it changes environment variables, which no other
//! test's thread may read meanwhile.

mod common;

mod audit;
mod auth;
mod calibration;
mod encounters;
mod first_run;
mod grpc;
mod lifecycle;
mod manifests;
mod privacy;
mod router;
mod router_records;
mod router_retention;
mod shard;
mod store_stall;
mod store_tls;
mod tls;
