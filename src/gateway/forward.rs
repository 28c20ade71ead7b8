//! What the upstream is told about the request beyond the client's own headers: the `Host` it expects
//! (`upstream_host`), and `X-Forwarded-For`, `-Proto` and `-Host` set by the gateway. A client's own
//! `X-Forwarded-*` are believed (kept and added to) only from `trusted_proxies`; from anyone else they are
//! replaced, so a client cannot claim another address to an upstream that reads them.

use std::net::IpAddr;

use pingora::http::RequestHeader;
use pingora::proxy::Session;

use crate::config::{Forwarding, UpstreamHost};

const XFF: &str = "x-forwarded-for";
const XFP: &str = "x-forwarded-proto";
const XFH: &str = "x-forwarded-host";

/// The TCP peer's IP address, if the session has one.
pub fn peer(session: &Session) -> Option<IpAddr> {
    session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip())
}

/// Whether the client reached this listener over TLS.
pub fn over_tls(session: &Session) -> bool {
    session.digest().is_some_and(|d| d.ssl_digest.is_some())
}

/// The scheme the client used: `https` when TLS ended here; else a trusted proxy's `X-Forwarded-Proto`
/// (`http` or `https`); else `http`. What the 402's `resource` URL says.
pub fn scheme(f: &Forwarding, session: &Session) -> &'static str {
    if over_tls(session) {
        return "https";
    }
    let trusted = peer(session).is_some_and(|p| f.trusts(p));
    let said = session.req_header().headers.get(XFP).map(|v| v.as_bytes());
    if trusted && said == Some(b"https") {
        "https"
    } else {
        "http"
    }
}

/// The client's address: the TCP peer, or, when the peer is a trusted proxy, the nearest address in its
/// `X-Forwarded-For` (read from the right) that is not a trusted proxy itself. What `payment_attempts`
/// counts against.
pub fn client(f: &Forwarding, peer: Option<IpAddr>, headers: &http::HeaderMap) -> Option<IpAddr> {
    let peer = peer?;
    if !f.trusts(peer) {
        return Some(peer);
    }
    let hops: Vec<IpAddr> = headers
        .get_all(XFF)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|h| h.trim().parse().ok())
        .collect();
    Some(hops.iter().rev().copied().find(|h| !f.trusts(*h)).unwrap_or(peer))
}

/// Sets the forwarding headers on the request to the upstream. `peer` is the client's address (the TCP
/// peer), `tls` whether it reached this listener over TLS, `authority` the upstream's own `host[:port]`.
pub fn headers(
    req: &mut RequestHeader,
    f: &Forwarding,
    peer: Option<IpAddr>,
    tls: bool,
    authority: Option<&str>,
) -> pingora::Result<()> {
    // A trusted proxy's own values are kept; anyone else's are never even read.
    let trusted = peer.is_some_and(|p| f.trusts(p));
    let kept = |name: &str| {
        trusted
            .then(|| req.headers.get(name))
            .flatten()
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let earlier_for = kept(XFF);
    let proto = kept(XFP);
    let host = kept(XFH).or_else(|| req.headers.get("host").and_then(|h| h.to_str().ok()).map(str::to_owned));
    let chain = match (earlier_for, peer) {
        (Some(e), Some(p)) => Some(format!("{e}, {p}")),
        (None, Some(p)) => Some(p.to_string()),
        (e, None) => e,
    };
    req.remove_header(XFF);
    if let Some(c) = chain {
        req.insert_header(XFF, c)?;
    }
    match proto {
        Some(p) => req.insert_header(XFP, p)?,
        None => req.insert_header(XFP, if tls { "https" } else { "http" })?,
    }
    req.remove_header(XFH);
    if let Some(h) = host {
        req.insert_header(XFH, h)?;
    }
    if let (UpstreamHost::Upstream, Some(a)) = (f.host, authority) {
        req.insert_header("host", a)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn forwarding(host: UpstreamHost, trusted: &[(&str, u8)]) -> Forwarding {
        Forwarding {
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            write_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            host,
            trusted_proxies: trusted.iter().map(|(a, b)| (a.parse().unwrap(), *b)).collect(),
        }
    }

    fn request(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/x", None).unwrap();
        for (k, v) in headers {
            r.insert_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn get<'a>(r: &'a RequestHeader, k: &str) -> &'a str {
        r.headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    #[test]
    fn forwarded_headers_are_the_gateways_unless_a_trusted_proxy_sent_them() {
        let claimed = [
            ("host", "api.example"),
            (XFF, "6.6.6.6"),
            (XFP, "https"),
            (XFH, "evil.example"),
        ];
        let sent = |f: &Forwarding, peer: &str, tls: bool| {
            let mut r = request(&claimed);
            headers(
                &mut r,
                f,
                Some(peer.parse().unwrap()),
                tls,
                Some("origin.internal:8080"),
            )
            .unwrap();
            r
        };
        let f = forwarding(UpstreamHost::Client, &[("10.0.0.0", 8)]);
        // An untrusted client: its claims are replaced.
        let r = sent(&f, "192.0.2.9", false);
        assert_eq!(
            (get(&r, XFF), get(&r, XFP), get(&r, XFH), get(&r, "host")),
            ("192.0.2.9", "http", "api.example", "api.example")
        );
        assert_eq!(get(&sent(&f, "192.0.2.9", true), XFP), "https", "TLS ended here");
        // A trusted proxy: kept and added to.
        let r = sent(&f, "10.1.2.3", false);
        assert_eq!(
            (get(&r, XFF), get(&r, XFP), get(&r, XFH)),
            ("6.6.6.6, 10.1.2.3", "https", "evil.example")
        );
        // `upstream_host: upstream`: the upstream's own name.
        let f = forwarding(UpstreamHost::Upstream, &[]);
        let r = sent(&f, "192.0.2.9", false);
        assert_eq!((get(&r, "host"), get(&r, XFH)), ("origin.internal:8080", "api.example"));
        assert!(!f.trusts("10.1.2.3".parse().unwrap()));
        // The client a limit counts: behind trusted proxies, the first untrusted hop from the right.
        let f = forwarding(UpstreamHost::Client, &[("10.0.0.0", 8)]);
        let via = |xff: &str, peer: &str| {
            let mut h = http::HeaderMap::new();
            h.insert(XFF, xff.parse().unwrap());
            client(&f, Some(peer.parse().unwrap()), &h).map(|c| c.to_string())
        };
        assert_eq!(
            via("6.6.6.6, 198.51.100.4, 10.0.0.9", "10.1.1.1").as_deref(),
            Some("198.51.100.4")
        );
        assert_eq!(
            via("198.51.100.4", "192.0.2.9").as_deref(),
            Some("192.0.2.9"),
            "untrusted peer: its claim is ignored"
        );
        assert_eq!(
            via("10.0.0.2", "10.1.1.1").as_deref(),
            Some("10.1.1.1"),
            "only proxies: the peer"
        );
        let v6 = forwarding(UpstreamHost::Client, &[("fd00::", 8)]);
        assert!(v6.trusts("fd12::1".parse().unwrap()) && !v6.trusts("10.0.0.1".parse().unwrap()));
    }
}
