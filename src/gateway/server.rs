//! `x402-gateway run`: load the price table, build the stages, start the control plane (health checks,
//! reloader, admin listener) and Pingora (HTTP/1.1 and h2c, or with `tls:` HTTPS with HTTP/2 by ALPN), and
//! drain on SIGTERM.

use std::path::Path;
use std::sync::Arc;

use pingora::apps::HttpServerOptions;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};

use crate::config::Config;
use crate::core::time::Clock;
use crate::gateway::admin::ControlPlane;
use crate::gateway::claimer::Claimer;
use crate::gateway::claims::Claims;
use crate::gateway::drain::{self, Drain, Requests};
use crate::gateway::facilitator::{FacilitatorClient, Remote};
use crate::gateway::health::Health;
use crate::gateway::live::{Live, LiveConfig};
use crate::gateway::metrics::Metrics;
use crate::gateway::onchain::Onchain;
use crate::gateway::proxy::Gateway;
use crate::gateway::reload::Reloader;
use crate::gateway::throttle::Throttle;
use crate::gateway::tls::Certificate;

/// Live authorizations tracked at once; past this the gateway refuses new payments (fail closed).
const MAX_CLAIMS: u64 = 1_000_000;

/// Builds the proxy and its control plane for a resolved configuration loaded from `path`.
fn build(config: Config, path: &Path) -> Result<(Gateway, ControlPlane), String> {
    let metrics = Arc::new(Metrics::new().map_err(|e| format!("metrics: {e}"))?);
    let clients = config
        .facilitators
        .iter()
        .map(|f| FacilitatorClient::new(f, metrics.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, c) in clients.iter().enumerate() {
        tracing::info!(facilitator = %c.shown(), order = i + 1, "facilitator");
    }
    let clock = Clock::system();
    let store = crate::gateway::store::open(&config.store, MAX_CLAIMS, clock.clone(), config.redis_durability)
        .map_err(|e| format!("{e}: check `store:` in the config"))?;
    let lease = config.claim_lease;
    // A settling claim is leased for longer than `/settle` can take: two calls and the pause between them.
    let slowest = config.facilitators.iter().map(|f| f.timeout).max().unwrap_or_default();
    let settle_lease = slowest * 3 + std::time::Duration::from_secs(5);
    let (admin_listen, health_settings, reload) = (config.admin_listen, config.health, config.reload);
    let tls = match &config.tls {
        Some(files) => Some(Certificate::load(files).map_err(|e| format!("{e}: check `tls:` in the config"))?),
        None => None,
    };
    let config_attempts = config.payment_attempts;
    let onchain = Arc::new(Onchain::new(&config.rpc).map_err(|e| format!("{e}: check `rpc:` in the config"))?);
    let live = Arc::new(LiveConfig::new(Live::new(config, &metrics)?));
    let remote = Arc::new(Remote::new(clients, metrics.clone()));
    let health = Arc::new(Health::new(health_settings, clock.clone(), metrics.clone()));
    let claims = Arc::new(Claims::new(
        store.clone(),
        clock.clone(),
        metrics.clone(),
        lease,
        settle_lease,
    ));
    let gateway = Gateway {
        live: live.clone(),
        claims: claims.clone(),
        clock: clock.clone(),
        remote: remote.clone(),
        onchain,
        throttle: config_attempts.map(|l| Arc::new(Throttle::new(l))),
        metrics: metrics.clone(),
        store: store.clone(),
        health: health.clone(),
        requests: Arc::new(Requests::default()),
    };
    let claimer = Arc::new(Claimer {
        store: store.clone(),
        remote: remote.clone(),
        live: live.clone(),
        metrics: metrics.clone(),
        clock: clock.clone(),
        id: format!("{}-{}", std::process::id(), clock.now()),
    });
    let plane = ControlPlane {
        admin_listen,
        claimer,
        reloader: Reloader {
            path: path.to_owned(),
            settings: reload,
            live: live.clone(),
            metrics: metrics.clone(),
            clock,
            tls,
        },
        metrics,
        health,
        remote,
        claims,
        store,
        live,
    };
    Ok((gateway, plane))
}

/// Loads `path` and serves until SIGTERM (drained) or SIGINT. `before_exit` runs before an early exit
/// once drained (it flushes the log writer).
pub fn run(path: &Path, config: Config, before_exit: Box<dyn FnOnce() + Send>) -> Result<(), String> {
    let listen = config.listen;
    tracing::info!(listen = %listen, routes = config.table.routes.len(), store = %config.store, facilitators = config.facilitators.len(), "starting gateway");
    for gap in config.table.gaps() {
        tracing::warn!("{gap}");
    }
    // Trusted CAs for https upstreams; Pingora's rustls connector uses the system roots when unset.
    let ca_file = config.upstream_ca_file.as_ref().map(|p| p.display().to_string());
    let shutdown = config.shutdown;
    let (gateway, plane) = build(config, path)?;
    let drain = Drain {
        settings: shutdown,
        health: plane.health.clone(),
        requests: gateway.requests.clone(),
        before_exit: std::sync::Mutex::new(Some(before_exit)),
    };

    let conf = ServerConf {
        ca_file,
        grace_period_seconds: Some(drain::pingora_wait(&shutdown)),
        graceful_shutdown_timeout_seconds: Some(1),
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
    match &plane.reloader.tls {
        Some(cert) => {
            let settings = cert.settings().map_err(|e| format!("tls: {e}"))?;
            service.add_tls_with_settings(&listen.to_string(), None, settings);
        }
        None => service.add_tcp(&listen.to_string()),
    }
    server.add_service(service);
    crate::gateway::admin::spawn(plane).map_err(|e| format!("control plane (admin_listen): {e}"))?;
    server.run(RunArgs {
        shutdown_signal: Box::new(drain),
    });
    Ok(())
}
