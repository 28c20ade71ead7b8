//! Stage 6, receipt: a paid response carries the settlement receipt in the header of the payment's
//! protocol version, and is made `private` so shared caches never replay it to someone who did not pay.

use pingora::http::ResponseHeader;

use crate::protocol::facilitator::SettleResponse;
use crate::protocol::{codec, Version};

/// The receipt header of a settlement, as `(name, value)`.
pub fn header(version: Version, settled: &SettleResponse) -> (&'static str, String) {
    (version.receipt_header(), codec::encode(settled))
}

/// Adds the receipt to a paid response.
pub fn attach(resp: &mut ResponseHeader, version: Version, settled: &SettleResponse) -> pingora::Result<()> {
    let (name, value) = header(version, settled);
    resp.insert_header(name, value)
}

/// Headers that tell a CDN or other shared cache how long to keep a response, beside `Cache-Control`
/// (RFC 9213's `CDN-Cache-Control`, and the vendors' own names for it).
fn is_shared_cache_header(name: &str) -> bool {
    name.ends_with("cdn-cache-control") || name == "surrogate-control"
}

/// Makes a priced route's answer uncacheable by shared caches, whatever the upstream said: `Cache-Control`
/// loses `public` and `s-maxage` and gains `private`, and the CDN-specific cache headers are removed, so a
/// CDN in front never keeps paid content to serve it unpaid.
pub fn make_private(resp: &mut ResponseHeader) -> pingora::Result<()> {
    let shared: Vec<_> = resp
        .headers
        .keys()
        .filter(|k| is_shared_cache_header(k.as_str()))
        .cloned()
        .collect();
    for name in shared {
        resp.remove_header(&name);
    }
    let cache_control = private_cache_control(resp.headers.get_all("cache-control").iter());
    resp.insert_header("cache-control", cache_control)
}

/// `Cache-Control` for a private answer: the upstream's directives (every `Cache-Control` line) less those
/// that let a shared cache store it, plus `private`.
fn private_cache_control<'a>(lines: impl Iterator<Item = &'a http::HeaderValue>) -> String {
    let shared = |d: &str| {
        let name = d.split('=').next().unwrap_or_default().trim();
        ["public", "s-maxage", "private", "proxy-revalidate"]
            .iter()
            .any(|s| name.eq_ignore_ascii_case(s))
    };
    let mut kept: Vec<&str> = lines
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|d| !d.is_empty() && !shared(d))
        .collect();
    kept.push("private");
    kept.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paid_answers_keep_no_shared_cache_permission() {
        let cc = |lines: &[&'static str]| {
            let values: Vec<_> = lines.iter().map(|s| http::HeaderValue::from_static(s)).collect();
            private_cache_control(values.iter())
        };
        assert_eq!(cc(&[]), "private");
        assert_eq!(cc(&["max-age=60"]), "max-age=60, private");
        assert_eq!(cc(&["no-store"]), "no-store, private");
        assert_eq!(cc(&["public, max-age=60, s-maxage=600"]), "max-age=60, private");
        assert_eq!(
            cc(&["Public", "S-MaxAge=600, must-revalidate"]),
            "must-revalidate, private"
        );
        assert_eq!(cc(&["private, proxy-revalidate"]), "private");

        let mut resp = ResponseHeader::build(200, None).unwrap();
        for (k, v) in [
            ("cache-control", "public, max-age=60, s-maxage=600"),
            ("cdn-cache-control", "max-age=600"),
            ("cloudflare-cdn-cache-control", "max-age=600"),
            ("surrogate-control", "max-age=600"),
            ("content-type", "application/json"),
        ] {
            resp.append_header(k, v).unwrap();
        }
        make_private(&mut resp).unwrap();
        let names: Vec<_> = resp.headers.keys().map(|k| k.as_str().to_owned()).collect();
        assert_eq!(names, ["cache-control", "content-type"]);
        assert_eq!(resp.headers["cache-control"], "max-age=60, private");
    }
}
