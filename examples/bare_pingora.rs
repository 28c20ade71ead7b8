//! Benchmark contender for `benches/load` (row 2): the smallest Pingora `ProxyHttp` there is, built on the
//! same Pingora version and with the same thread count as x402-gateway, so the load benchmark can tell what
//! the gateway adds on top of Pingora itself. Not part of the gateway.
//!
//! Tuning, all on Pingora's side: one service with as many worker threads as the gateway
//! (`available_parallelism`, or `--threads`), the upstream keep-alive pool (Pingora's connector reuses
//! idle upstream connections; the pool is sized with `--pool`), plain HTTP/1.1 both ways, `TCP_NODELAY`
//! (Pingora sets it on every accepted and connected socket), no logger installed (Pingora logs through the
//! `log` facade, which discards everything when none is set), no per-request work beyond picking the peer.
//!
//! Run: `cargo run --release --example bare_pingora -- --listen 127.0.0.1:8080 --upstream 127.0.0.1:3000`

use std::net::SocketAddr;

use async_trait::async_trait;
use pingora::prelude::{HttpPeer, Session};
use pingora::proxy::{http_proxy_service, ProxyHttp};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;

/// Sends every request to one upstream.
struct Bare {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> pingora::Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

struct Args {
    listen: String,
    upstream: SocketAddr,
    threads: usize,
    pool: usize,
    work_stealing: bool,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        listen: "127.0.0.1:8080".into(),
        upstream: "127.0.0.1:3000".parse().map_err(|e| format!("{e}"))?,
        threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        pool: 128,
        work_stealing: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => a.listen = value()?,
            "--upstream" => a.upstream = value()?.parse().map_err(|e| format!("--upstream: {e}"))?,
            "--threads" => a.threads = value()?.parse().map_err(|e| format!("--threads: {e}"))?,
            "--pool" => a.pool = value()?.parse().map_err(|e| format!("--pool: {e}"))?,
            "--no-work-stealing" => a.work_stealing = false,
            _ => {
                return Err(format!(
                    "unknown flag {flag}; usage: bare_pingora --listen ADDR --upstream IP:PORT [--threads N] [--pool N] [--no-work-stealing]"
                ))
            }
        }
    }
    Ok(a)
}

fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bare_pingora: {e}");
            std::process::exit(2);
        }
    };
    let conf = ServerConf {
        threads: a.threads,
        work_stealing: a.work_stealing,
        upstream_keepalive_pool_size: a.pool,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut service = http_proxy_service(&server.configuration, Bare { upstream: a.upstream });
    service.add_tcp(&a.listen);
    server.add_service(service);
    server.run_forever();
}
