//! What the router itself refuses or cannot complete, as one type that
//! `status.rs` maps to a gRPC status. A shard's own answer (an
//! INVALID_ARGUMENT, a NOT_FOUND) is passed on as the shard gave it. A
//! module of its own, beside `status.rs` rather than inside `router/`: the
//! router's services use the mapping, so the mapping must not import the
//! router.

/// A routed request the router answered itself.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// A capture to record on a router started without a shared store.
    #[error(
        "capture.record: this router has no encounter store (start it with \
         --encounter-store; docs/scale.md); send record = false"
    )]
    NoEncounterStore,
    /// A capture to record together with `accept_partial`.
    #[error(
        "capture.record with accept_partial: a partial answer cannot be recorded as the \
         encounter's decision; send one or the other"
    )]
    RecordPartial,
    /// Shards with every replica down, for a search that needs them all.
    #[error(
        "{} {} of {shards} {} unavailable: every replica is down \
         (set accept_partial for an answer from the other shards)",
        noun(missing.len()), list(missing), verb(missing.len())
    )]
    ShardsDown {
        /// The shards with no replica up.
        missing: Vec<u32>,
        /// The shards in all.
        shards: u32,
    },
    /// A shard that did not answer within the request's deadline.
    #[error("shard {shard} did not answer within the deadline")]
    ShardLate {
        /// The shard.
        shard: u32,
    },
    /// A change that cannot reach every replica of its shard.
    #[error(
        "replica {replica} of shard {shard} is down: a change must reach every replica of \
         its shard; retry once it is back"
    )]
    ReplicaDown {
        /// The replica's address.
        replica: String,
        /// Its shard.
        shard: u32,
    },
    /// A change some of whose replicas did not answer in time.
    #[error(
        "shard {shard}'s replicas did not all answer within the deadline: \
         the change may have reached some; retry it"
    )]
    ReplicasLate {
        /// The shard.
        shard: u32,
    },
    /// A shard in the fleet with no replica (the settings forbid it).
    #[error("a shard with no replicas")]
    NoReplicas,
    /// A fleet without shards (the settings forbid it).
    #[error("no shards")]
    NoShards,
}

fn noun(n: usize) -> &'static str {
    if n == 1 { "shard" } else { "shards" }
}

fn verb(n: usize) -> &'static str {
    if n == 1 { "is" } else { "are" }
}

fn list(shards: &[u32]) -> String {
    let names: Vec<String> = shards.iter().map(u32::to_string).collect();
    names.join(", ")
}
