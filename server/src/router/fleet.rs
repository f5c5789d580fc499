//! The shards' replicas as the router sees them: a channel to each
//! replica's ports' and back office's listeners, whether its last health
//! check said SERVING, how many of the router's calls it has in flight,
//! and the GalleryInfo it last reported. [`Fleet::choices`] orders a
//! shard's replicas for a call: healthy ones first, the least loaded first.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::settings::{ReplicaAddr, RouteSettings};
use crate::proto::GalleryInfo;

/// One replica of one shard.
pub struct Replica {
    /// The shard it serves.
    pub shard: u32,
    /// Its ports' listener, for logs and metric labels.
    pub url: String,
    /// Its ports' listener (Matcher, health).
    pub ports: Channel,
    /// Its back office's listener (GalleryAdmin, Manifests).
    pub admin: Channel,
    up: AtomicBool,
    in_flight: AtomicUsize,
    info: RwLock<Option<GalleryInfo>>,
}

impl Replica {
    /// Whether its last health check (or call) found it serving.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Marks it up or down; returns whether that changed anything.
    pub fn set_up(&self, up: bool) -> bool {
        self.up.swap(up, Ordering::AcqRel) != up
    }

    /// The router's calls it is serving now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts one call in flight until the guard drops.
    pub fn busy(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Busy(self.clone())
    }

    /// The GalleryInfo it last reported.
    pub fn info(&self) -> Option<GalleryInfo> {
        self.info.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Keeps the GalleryInfo it just reported.
    pub fn set_info(&self, info: GalleryInfo) {
        *self.info.write().unwrap_or_else(|p| p.into_inner()) = Some(info);
    }
}

/// A call in flight on a replica.
pub struct Busy(Arc<Replica>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Every shard's replicas.
pub struct Fleet {
    shards: Vec<Vec<Arc<Replica>>>,
    /// Rotates the choice among equally loaded replicas.
    turn: AtomicU64,
}

impl Fleet {
    /// Channels (connected lazily) to every replica the settings list.
    pub fn new(settings: &RouteSettings) -> anyhow::Result<Fleet> {
        let tls = client_tls(settings)?;
        let mut shards: Vec<Vec<Arc<Replica>>> = vec![Vec::new(); settings.shards as usize];
        for (i, r) in settings.replicas.iter().enumerate() {
            let admin_url = match settings.replica_admins.get(i) {
                Some(a) => a.url.clone(),
                None => next_port(&r.url)?,
            };
            let replica = Replica {
                shard: r.shard,
                url: r.url.clone(),
                ports: channel(&r.url, tls.as_ref())?,
                admin: channel(&admin_url, tls.as_ref())?,
                up: AtomicBool::new(false),
                in_flight: AtomicUsize::new(0),
                info: RwLock::new(None),
            };
            shards[r.shard as usize].push(Arc::new(replica));
        }
        Ok(Fleet {
            shards,
            turn: AtomicU64::new(0),
        })
    }

    /// Shards in all.
    pub fn shard_count(&self) -> u32 {
        self.shards.len() as u32
    }

    /// Every replica, shard by shard.
    pub fn replicas(&self) -> impl Iterator<Item = &Arc<Replica>> {
        self.shards.iter().flatten()
    }

    /// Shard `shard`'s replicas (all of them, up or not).
    pub fn shard(&self, shard: u32) -> &[Arc<Replica>] {
        &self.shards[shard as usize]
    }

    /// Shard `shard`'s replicas that are up, in the order to try them: the
    /// fewest calls in flight first, ties taken in turn.
    pub fn choices(&self, shard: u32) -> Vec<Arc<Replica>> {
        let all = &self.shards[shard as usize];
        let turn = self.turn.fetch_add(1, Ordering::Relaxed) as usize;
        let mut up: Vec<(usize, Arc<Replica>)> = (0..all.len())
            .map(|i| (i + turn) % all.len())
            .map(|i| (i, all[i].clone()))
            .filter(|(_, r)| r.is_up())
            .collect();
        up.sort_by_key(|(_, r)| r.in_flight());
        up.into_iter().map(|(_, r)| r).collect()
    }

    /// The GalleryInfo some replica last reported (the shards are
    /// configured alike: any one gives the thresholds).
    pub fn first_info(&self) -> Option<GalleryInfo> {
        self.replicas().find_map(|r| r.info())
    }
}

/// The same URL with the port one higher: a replica's back office when
/// `--replica-admin` does not say.
fn next_port(url: &str) -> anyhow::Result<String> {
    let (head, port) = url
        .rsplit_once(':')
        .with_context(|| format!("{url}: no port to derive the admin listener from"))?;
    let port: u16 = port
        .trim_end_matches('/')
        .parse()
        .with_context(|| format!("{url}: the port is not a number"))?;
    Ok(format!(
        "{head}:{}",
        port.checked_add(1).context("port 65535 has no next")?
    ))
}

fn channel(url: &str, tls: Option<&ClientTlsConfig>) -> anyhow::Result<Channel> {
    let mut endpoint = Endpoint::from_shared(url.to_string())
        .with_context(|| format!("replica URL {url}"))?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5));
    if url.starts_with("https://") {
        let tls = tls.with_context(|| format!("{url} is https: give --shard-ca"))?;
        endpoint = endpoint.tls_config(tls.clone())?;
    }
    Ok(endpoint.connect_lazy())
}

/// The TLS the router speaks to https:// replicas: their CA, and its own
/// certificate (role `router`) when the shards ask for one.
fn client_tls(settings: &RouteSettings) -> anyhow::Result<Option<ClientTlsConfig>> {
    let Some(ca) = &settings.shard_ca else {
        return Ok(None);
    };
    let read = |p: &std::path::PathBuf| {
        std::fs::read(p).with_context(|| format!("reading {}", p.display()))
    };
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?));
    if let (Some(cert), Some(key)) = (&settings.shard_cert, &settings.shard_key) {
        tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(Some(tls))
}

/// Replicas a settings list names for each shard, for messages.
pub fn describe(replicas: &[ReplicaAddr]) -> String {
    replicas
        .iter()
        .map(|r| format!("{}={}", r.shard, r.url))
        .collect::<Vec<_>>()
        .join(", ")
}
