//! Stage 6, receipt: a paid response carries the settlement receipt in the header of the payment's
//! protocol version, and is made `private` so shared caches never replay it to someone who did not pay.

use pingora::http::ResponseHeader;

use crate::protocol::facilitator::SettleResponse;
use crate::protocol::{codec, Version};

/// The receipt header of a settlement, as `(name, value)`.
pub fn header(version: Version, settled: &SettleResponse) -> (&'static str, String) {
    (version.receipt_header(), codec::encode(settled))
}

/// Adds the receipt to a paid response and makes it `private`.
pub fn attach(resp: &mut ResponseHeader, version: Version, settled: &SettleResponse) -> pingora::Result<()> {
    let (name, value) = header(version, settled);
    resp.insert_header(name, value)?;
    let cache_control = private_cache_control(resp.headers.get("cache-control"));
    resp.insert_header("cache-control", cache_control)
}

/// `Cache-Control` of a paid response: the upstream's, made `private` so shared caches never replay it.
fn private_cache_control(current: Option<&http::HeaderValue>) -> String {
    match current.and_then(|v| v.to_str().ok()) {
        Some(c)
            if c.split(',')
                .any(|d| d.trim().eq_ignore_ascii_case("private") || d.trim().eq_ignore_ascii_case("no-store")) =>
        {
            c.to_owned()
        }
        Some(c) => format!("{c}, private"),
        None => "private".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paid_answers_become_private_without_losing_the_upstream_directives() {
        let v = |s: &'static str| http::HeaderValue::from_static(s);
        assert_eq!(private_cache_control(None), "private");
        assert_eq!(private_cache_control(Some(&v("max-age=60"))), "max-age=60, private");
        assert_eq!(private_cache_control(Some(&v("no-store"))), "no-store");
    }
}
