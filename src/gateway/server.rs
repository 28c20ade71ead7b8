//! `x402-gateway run`: load the price table, resolve upstreams, and start Pingora (HTTP/1.1 and h2c) with
//! the admin listener beside it.

use std::net::ToSocketAddrs;
use std::path::Path;
use std::sync::Arc;

use pingora::apps::HttpServerOptions;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;

use crate::config::{Config, ProcessEnv};
use crate::core::time::Clock;
use crate::gateway::admin::Probes;
use crate::gateway::claims::Claims;
use crate::gateway::facilitator::{FacilitatorClient, Remote};
use crate::gateway::metrics::Metrics;
use crate::gateway::proxy::{Gateway, ResolvedUpstream};

/// Live authorizations tracked at once; past this the gateway refuses new payments (fail closed).
const MAX_CLAIMS: u64 = 1_000_000;
/// Seconds Pingora waits on SIGTERM before draining: keep it well under a pod's termination grace period.
const GRACE_PERIOD_SECS: u64 = 5;
const GRACEFUL_SHUTDOWN_TIMEOUT_SECS: u64 = 10;

/// Resolves each upstream once, at start-up, keeping the config's order (routes refer to them by index).
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
        out.push(ResolvedUpstream {
            addr,
            tls: u.tls,
            sni: u.host.clone(),
        });
    }
    Ok(out)
}

/// Builds the proxy for a resolved configuration.
pub fn build(config: Config) -> Result<(Gateway, Probes), String> {
    let upstreams = resolve(&config)?;
    let metrics = Arc::new(Metrics::new().map_err(|e| format!("metrics: {e}"))?);
    let f = &config.facilitator;
    let client = FacilitatorClient::new(&f.url, f.header_map(), f.timeout)?;
    let clock = Clock::system();
    let store = crate::gateway::store::open(&config.store, MAX_CLAIMS, clock.clone())
        .map_err(|e| format!("{e}: check `store:` in the config"))?;
    let lease = config.claim_lease;
    // A settling claim is leased for longer than `/settle` can take: two calls and the pause between them.
    let settle_lease = config.facilitator.timeout * 3 + std::time::Duration::from_secs(5);
    let gateway = Gateway {
        config: Arc::new(config),
        upstreams,
        claims: Claims::new(store.clone(), clock.clone(), metrics.clone(), lease, settle_lease),
        clock,
        remote: Remote::new(client.clone(), metrics.clone()),
        metrics: metrics.clone(),
        store: store.clone(),
    };
    let probes = Probes {
        metrics,
        facilitator: client,
        store,
    };
    Ok((gateway, probes))
}

/// Loads `path` and serves until SIGTERM/SIGINT. Never returns on success (Pingora exits the process).
pub fn run(path: &Path) -> Result<(), String> {
    let config = crate::config::load(path, &ProcessEnv).map_err(|e| e.to_string())?;
    let listen = config.listen;
    let admin = config.admin_listen;
    tracing::info!(listen = %listen, routes = config.table.routes.len(), store = %config.store, facilitator = %config.facilitator.url, "starting gateway");
    // Trusted CAs for https upstreams; Pingora's rustls connector uses the system roots when unset.
    let ca_file = config.upstream_ca_file.as_ref().map(|p| p.display().to_string());
    let (gateway, probes) = build(config)?;

    let conf = ServerConf {
        ca_file,
        grace_period_seconds: Some(GRACE_PERIOD_SECS),
        graceful_shutdown_timeout_seconds: Some(GRACEFUL_SHUTDOWN_TIMEOUT_SECS),
        threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut service = pingora::proxy::http_proxy_service(&server.configuration, gateway);
    if let Some(app) = service.app_logic_mut() {
        let mut opts = HttpServerOptions::default();
        opts.h2c = true;
        app.server_options = Some(opts);
    }
    service.add_tcp(&listen.to_string());
    server.add_service(service);
    if let Some(addr) = admin {
        crate::gateway::admin::spawn(addr, probes).map_err(|e| format!("admin listener {addr}: {e}"))?;
    }
    server.run_forever()
}
