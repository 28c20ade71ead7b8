//! What the upstream is told about the request beyond the client's own headers: the `Host` it expects
//! (`upstream_host`), and `X-Forwarded-For`, `-Proto` and `-Host` set by the gateway. A client's own
//! `X-Forwarded-*` are believed (kept and added to) only from `trusted_proxies`; from anyone else they are
//! replaced, so a client cannot claim another address to an upstream that reads them.

use std::net::IpAddr;

use pingora::http::RequestHeader;

use crate::config::{Forwarding, UpstreamHost};

const XFF: &str = "x-forwarded-for";
const XFP: &str = "x-forwarded-proto";
const XFH: &str = "x-forwarded-host";

/// Sets the forwarding headers on the request to the upstream. `peer` is the client's address (the TCP
/// peer), `authority` the upstream's own `host[:port]`.
pub fn headers(
    req: &mut RequestHeader,
    f: &Forwarding,
    peer: Option<IpAddr>,
    authority: Option<&str>,
) -> pingora::Result<()> {
    let trusted = peer.is_some_and(|p| f.trusts(p));
    let client_host = req.headers.get("host").and_then(|h| h.to_str().ok()).map(str::to_owned);
    let text = |name: &str, req: &RequestHeader| req.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let earlier_for = if trusted { text(XFF, req) } else { None };
    let proto = match (trusted, text(XFP, req)) {
        (true, Some(p)) => p,
        // The listener speaks plain HTTP (TLS ends in front of it, or nowhere).
        _ => "http".to_owned(),
    };
    let host = match (trusted, text(XFH, req)) {
        (true, Some(h)) => Some(h),
        _ => client_host,
    };
    let chain = match (earlier_for, peer) {
        (Some(e), Some(p)) => Some(format!("{e}, {p}")),
        (None, Some(p)) => Some(p.to_string()),
        (e, None) => e,
    };
    req.remove_header(XFF);
    if let Some(c) = chain {
        req.insert_header(XFF, c)?;
    }
    req.insert_header(XFP, proto)?;
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
        let f = forwarding(UpstreamHost::Client, &[("10.0.0.0", 8)]);
        // An untrusted client: its claims are replaced.
        let mut r = request(&claimed);
        headers(
            &mut r,
            &f,
            Some("192.0.2.9".parse().unwrap()),
            Some("origin.internal:8080"),
        )
        .unwrap();
        assert_eq!(
            (get(&r, XFF), get(&r, XFP), get(&r, XFH), get(&r, "host")),
            ("192.0.2.9", "http", "api.example", "api.example")
        );
        // A trusted proxy: kept and added to.
        let mut r = request(&claimed);
        headers(&mut r, &f, Some("10.1.2.3".parse().unwrap()), None).unwrap();
        assert_eq!(
            (get(&r, XFF), get(&r, XFP), get(&r, XFH)),
            ("6.6.6.6, 10.1.2.3", "https", "evil.example")
        );
        // `upstream_host: upstream`: the upstream's own name.
        let f = forwarding(UpstreamHost::Upstream, &[]);
        let mut r = request(&claimed);
        headers(
            &mut r,
            &f,
            Some("192.0.2.9".parse().unwrap()),
            Some("origin.internal:8080"),
        )
        .unwrap();
        assert_eq!((get(&r, "host"), get(&r, XFH)), ("origin.internal:8080", "api.example"));
        assert!(!f.trusts("10.1.2.3".parse().unwrap()));
        let v6 = forwarding(UpstreamHost::Client, &[("fd00::", 8)]);
        assert!(v6.trusts("fd12::1".parse().unwrap()) && !v6.trusts("10.0.0.1".parse().unwrap()));
    }
}
