//! The configuration the request path runs on, swapped whole on reload. A request takes one snapshot when
//! it starts and finishes under it, whatever is swapped in meanwhile. A replaced table is kept, retired,
//! as long as a 402 quoted from it can still be paid (its longest `maxTimeoutSeconds`), so a client that
//! was quoted the old price is not refused for paying it.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::gateway::metrics::{Metrics, RouteMetrics};

/// An upstream with its address resolved when its config was loaded (Pingora's `HttpPeer::new` would
/// resolve names blocking, and panic on failure).
#[derive(Debug, Clone)]
pub struct ResolvedUpstream {
    pub addr: SocketAddr,
    pub tls: bool,
    pub sni: String,
    /// `host[:port]` as its own `Host` header names it (the port only when not the scheme's default), for
    /// `upstream_host: upstream`.
    pub authority: String,
}

/// One loaded configuration, ready for the request path.
pub struct Live {
    pub config: Arc<Config>,
    /// By the config's upstream index.
    pub upstreams: Vec<ResolvedUpstream>,
    /// By route index; the unmatched requests' last.
    route_metrics: Vec<RouteMetrics>,
}

impl Live {
    /// Resolves the upstreams of `config` and looks up its metric handles.
    pub fn new(config: Config, metrics: &Metrics) -> Result<Self, String> {
        let upstreams = resolve(&config)?;
        let route_metrics = metrics.for_config(&config);
        Ok(Live {
            config: Arc::new(config),
            upstreams,
            route_metrics,
        })
    }

    /// The handles of route `index`, or of unmatched requests.
    pub fn route_metrics(&self, index: Option<usize>) -> Option<&RouteMetrics> {
        match index {
            Some(i) => self.route_metrics.get(i),
            None => self.route_metrics.last(),
        }
    }

    /// Until when (unix seconds) a 402 quoted from this table can still be paid, if retired at `now`.
    fn quotes_until(&self, now: u64) -> u64 {
        let longest = self
            .config
            .table
            .routes
            .iter()
            .filter_map(|r| r.pricing.as_ref())
            .map(|p| p.max_timeout())
            .max()
            .unwrap_or(0);
        now.saturating_add(longest)
    }
}

/// Resolves each upstream, keeping the config's order (routes refer to them by index).
fn resolve(config: &Config) -> Result<Vec<ResolvedUpstream>, String> {
    let mut out = Vec::with_capacity(config.upstreams.len());
    for u in &config.upstreams {
        let name = &u.name;
        let addrs: Vec<_> = (u.host.as_str(), u.port)
            .to_socket_addrs()
            .map_err(|e| format!("upstream {name}: cannot resolve {}:{}: {e}", u.host, u.port))?
            .collect();
        // Prefer IPv4: `localhost` often resolves to ::1 first while services listen on 127.0.0.1.
        let addr = addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or(addrs.first())
            .copied()
            .ok_or_else(|| format!("upstream {name}: {}:{} has no address", u.host, u.port))?;
        let default_port = if u.tls { 443 } else { 80 };
        let authority = if u.port == default_port {
            u.host.clone()
        } else {
            format!("{}:{}", u.host, u.port)
        };
        out.push(ResolvedUpstream {
            addr,
            tls: u.tls,
            sni: u.host.clone(),
            authority,
        });
    }
    Ok(out)
}

/// A replaced configuration: when it was retired, and until when any of its quotes can be payable.
#[derive(Clone)]
struct Retired {
    live: Arc<Live>,
    at: u64,
    until: u64,
}

/// The current configuration and the retired ones whose quotes may still be payable, newest first.
pub struct Generations {
    pub current: Arc<Live>,
    retired: Vec<Retired>,
}

impl Generations {
    /// The retired configurations some of whose quotes may still be payable at `now`, newest first, each
    /// with when it was retired (a route's quotes stay payable its own `maxTimeoutSeconds` after that).
    pub fn honoured(&self, now: u64) -> impl Iterator<Item = (&Live, u64)> {
        self.retired
            .iter()
            .filter(move |r| now <= r.until)
            .map(|r| (r.live.as_ref(), r.at))
    }
}

/// The swappable holder.
pub struct LiveConfig(ArcSwap<Generations>);

impl LiveConfig {
    /// Starts with `live`.
    pub fn new(live: Live) -> Self {
        LiveConfig(ArcSwap::from_pointee(Generations {
            current: Arc::new(live),
            retired: Vec::new(),
        }))
    }

    /// The snapshot a request runs under.
    pub fn load(&self) -> Arc<Generations> {
        self.0.load_full()
    }

    /// Makes `live` current at `now`; the one it replaces is retired while its quotes are payable.
    /// Only the reloader calls this, so there is no race between two swaps.
    pub fn swap(&self, live: Live, now: u64) {
        let old = self.0.load_full();
        let mut retired = vec![Retired {
            live: old.current.clone(),
            at: now,
            until: old.current.quotes_until(now),
        }];
        retired.extend(old.retired.iter().filter(|r| now <= r.until).cloned());
        self.0.store(Arc::new(Generations {
            current: Arc::new(live),
            retired,
        }));
    }
}
