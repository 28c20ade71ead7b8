//! Route matching: request paths are normalised once, then matched against compiled patterns
//! (`*` one segment, `**` the rest, `:name` one named segment), first match wins.
//!
//! Every normalisation errs toward the price: an upstream may serve `/PAID/x`, `/paid./x` or `/%70aid/x` as
//! `/paid/x` (Express, ASP.NET and IIS route case-insensitively; IIS drops trailing dots and spaces), so
//! priced patterns match all of those ([`Matching::Loose`]), while free patterns match only what they say
//! ([`Matching::Exact`]), so no spelling of a priced resource can fall through to a free route.

use std::fmt;

/// How a pattern compares its literal segments with a request's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matching {
    /// Byte for byte: free routes, and priced routes whose upstream is known to be strict.
    Exact,
    /// Case-insensitively (Unicode lower case), ignoring trailing dots and spaces of a segment.
    Loose,
}

/// A compiled path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    source: String,
    segments: Vec<Segment>,
    matching: Matching,
}

/// A segment as loose matching compares it: case-folded as any upstream might fold it, without trailing
/// dots and spaces.
fn loose(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.trim_end_matches(['.', ' ']).chars() {
        fold(c, &mut out);
    }
    out
}

/// Folds one character toward the ASCII letters an upstream's case-insensitive comparison may take it for.
/// Frameworks compare by lower case, by upper case (Java's `equalsIgnoreCase`, .NET's invariant culture),
/// or one UTF-16 unit at a time, so `ſ` (upper `S`), `ı` (upper `I`), the Kelvin sign (lower `k`), `İ`
/// (lower `i` and a dot) and `ß` (upper `SS`) may be read as ASCII: each folds to those letters, so a
/// priced pattern catches every such spelling. Anything else is lower-cased.
fn fold(c: char, out: &mut String) {
    if c.is_ascii() {
        out.push(c.to_ascii_lowercase());
        return;
    }
    let mut lower = c.to_lowercase();
    match (lower.next(), lower.next()) {
        (Some(l), None) if l.is_ascii() => out.push(l),
        (Some(l), None) => {
            let upper = l.to_uppercase().to_string();
            if upper.is_ascii() {
                out.extend(upper.chars().map(|u| u.to_ascii_lowercase()));
            } else {
                out.push(l);
            }
        }
        // A one-unit mapping (Java's `Character.toLowerCase`) keeps the first letter only.
        (Some(l), Some(_)) if l.is_ascii_alphabetic() => out.push(l),
        _ => out.extend(c.to_lowercase()),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// As written, and as loose matching compares it (folded once, when compiled).
    Literal { exact: String, folded: String },
    /// `*` or `:name`: exactly one non-empty segment.
    One,
    /// `**`: any number of segments, including none; only last.
    Rest,
}

impl PathPattern {
    /// Compiles `/v1/:id/*/files/**`.
    pub fn parse(s: &str, matching: Matching) -> Result<Self, String> {
        let rest = s
            .strip_prefix('/')
            .ok_or_else(|| format!("path {s:?} must start with '/'"))?;
        let parts: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        let mut segments = Vec::with_capacity(parts.len());
        for (i, p) in parts.iter().enumerate() {
            let seg = match *p {
                "**" if i + 1 == parts.len() => Segment::Rest,
                "**" => return Err(format!("path {s:?}: '**' may only be the last segment")),
                "*" => Segment::One,
                "" if i + 1 == parts.len() => continue, // trailing slash: same as without
                "" => return Err(format!("path {s:?} has an empty segment ('//')")),
                p if p.starts_with(':') && p.len() > 1 => Segment::One,
                p if p.contains('*') => return Err(format!("path {s:?}: '*' must be a whole segment ('*' or '**')")),
                p => Segment::Literal {
                    exact: p.to_owned(),
                    folded: loose(p),
                },
            };
            segments.push(seg);
        }
        Ok(PathPattern {
            source: s.to_owned(),
            segments,
            matching,
        })
    }

    /// Whether every path `other` matches is matched by this pattern too (judged segment by segment, so
    /// a `false` may be a superset written differently: callers use it only to silence warnings).
    pub fn covers(&self, other: &PathPattern) -> bool {
        for (i, s) in self.segments.iter().enumerate() {
            match (s, other.segments.get(i)) {
                (Segment::Rest, _) => return true,
                (Segment::One, Some(Segment::One | Segment::Literal { .. })) => {}
                (Segment::Literal { folded, .. }, Some(Segment::Literal { folded: o, .. })) if folded == o => {}
                _ => return false,
            }
        }
        self.segments.len() == other.segments.len()
    }

    /// Whether a normalised path matches.
    pub fn matches(&self, path: &NormalPath) -> bool {
        let segs = match self.matching {
            Matching::Exact => &path.segments,
            Matching::Loose => path.folded(),
        };
        let mut i = 0;
        for (n, pat) in self.segments.iter().enumerate() {
            let literal = match pat {
                Segment::Rest => return n + 1 == self.segments.len(),
                Segment::One if i < segs.len() => {
                    i += 1;
                    continue;
                }
                Segment::One => return false,
                Segment::Literal { exact, .. } if self.matching == Matching::Exact => exact,
                Segment::Literal { folded, .. } => folded,
            };
            if segs.get(i) != Some(literal) {
                return false;
            }
            i += 1;
        }
        i == segs.len()
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// A host pattern: exact (`api.example.com`) or one leading wildcard label (`*.example.com`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern(String);

impl HostPattern {
    /// Lower-cases and validates.
    pub fn parse(s: &str) -> Result<Self, String> {
        let h = s.to_ascii_lowercase();
        let body = h.strip_prefix("*.").unwrap_or(&h);
        if body.is_empty() || body.contains('*') || body.contains('/') || body.contains(':') {
            return Err(format!(
                "host {s:?} must be a name like api.example.com or *.example.com (no port, no scheme)"
            ));
        }
        Ok(HostPattern(h))
    }

    /// The pattern as written (lower-cased).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Matches a `Host` header value (port ignored, case-insensitive).
    pub fn matches(&self, host: &str) -> bool {
        let host = host
            .rsplit_once(':')
            .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
            .map_or(host, |(h, _)| h);
        // `api.example.com.` (fully qualified) is the same host.
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        match self.0.strip_prefix("*.") {
            Some(suffix) => {
                host.len() > suffix.len() + 1
                    && host.ends_with(suffix)
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
            }
            None => host == self.0,
        }
    }
}

/// A request path after percent-decoding and dot-segment removal: what routes match against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalPath {
    segments: Vec<String>,
    /// The segments as loose matching compares them, folded once per request when a priced route first
    /// asks, not once per route.
    folded: std::sync::OnceLock<Vec<String>>,
    /// Whether normalising changed the structure (dot segments, empty segments): then the upstream gets
    /// the normal form, so it cannot see a different resource than the one that was priced.
    pub rewritten: bool,
}

/// Why a request path was refused (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the request target must be an absolute path starting with '/'")]
    NotOriginForm,
    #[error("the path has an invalid percent-encoding")]
    BadEncoding,
    #[error("the path contains ';', '\\', or an encoded '/', '\\', '%' escape or control character, which this gateway refuses as ambiguous")]
    Ambiguous,
    #[error("the path climbs above the root with '..'")]
    AboveRoot,
}

impl NormalPath {
    /// Normalises the path part of a request target (no query).
    pub fn parse(raw: &str) -> Result<Self, PathError> {
        let rest = raw.strip_prefix('/').ok_or(PathError::NotOriginForm)?;
        let mut segments: Vec<String> = Vec::new();
        let mut rewritten = false;
        let parts: Vec<&str> = rest.split('/').collect();
        let last = parts.len().saturating_sub(1);
        for (i, part) in parts.iter().enumerate() {
            let seg = percent_decode(part)?;
            match seg.as_str() {
                "" if i == last => {}
                "" | "." => rewritten = true,
                ".." => {
                    rewritten = true;
                    segments.pop().ok_or(PathError::AboveRoot)?;
                }
                _ => segments.push(seg),
            }
        }
        Ok(NormalPath {
            segments,
            folded: std::sync::OnceLock::new(),
            rewritten,
        })
    }

    fn folded(&self) -> &Vec<String> {
        self.folded
            .get_or_init(|| self.segments.iter().map(|s| loose(s)).collect())
    }

    /// The normal form as a path, re-encoding what must be encoded.
    pub fn to_path(&self) -> String {
        let mut out = String::new();
        for s in &self.segments {
            out.push('/');
            for b in s.bytes() {
                if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b) {
                    out.push(char::from(b));
                } else {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
        }
        if out.is_empty() {
            out.push('/');
        }
        out
    }
}

fn percent_decode(s: &str) -> Result<String, PathError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            let hex = b.get(i + 1..i + 3).ok_or(PathError::BadEncoding)?;
            let v = std::str::from_utf8(hex)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(PathError::BadEncoding)?;
            if v == b'/' || v == b'\\' || v == b';' || v < 0x20 || v == 0x7f {
                return Err(PathError::Ambiguous);
            }
            out.push(v);
            i += 3;
        } else {
            // `;` starts matrix parameters, which some servers strip before routing (`/paid;x/a` is `/paid/a`).
            // A raw control character is as ambiguous as an encoded one (found by tests/fuzz.rs: its
            // normal form re-encodes it, and must read back the same).
            if c == b'\\' || c == b';' || c < 0x20 || c == 0x7f {
                return Err(PathError::Ambiguous);
            }
            out.push(c);
            i += 1;
        }
    }
    // A decoded segment that still holds an escape (`%2570` → `%70`, or `%257%30` → `%70`) reads as another
    // path to an upstream that decodes twice.
    let hex = |b: Option<&u8>| b.is_some_and(u8::is_ascii_hexdigit);
    if (0..out.len()).any(|i| out[i] == b'%' && hex(out.get(i + 1)) && hex(out.get(i + 2))) {
        return Err(PathError::Ambiguous);
    }
    // Dots and spaces only, other than `.` and `..`: an upstream that trims trailing dots and spaces (IIS)
    // reads `.. ` or `...` as a dot-segment the route table did not see.
    let dotty = !out.is_empty() && out.iter().all(|&c| c == b'.' || c == b' ');
    if dotty && out != b"." && out != b".." {
        return Err(PathError::Ambiguous);
    }
    String::from_utf8(out).map_err(|_| PathError::BadEncoding)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, path: &str) -> bool {
        PathPattern::parse(pattern, Matching::Exact)
            .unwrap()
            .matches(&NormalPath::parse(path).unwrap())
    }

    fn priced(pattern: &str, path: &str) -> bool {
        PathPattern::parse(pattern, Matching::Loose)
            .unwrap()
            .matches(&NormalPath::parse(path).unwrap())
    }

    #[test]
    fn wildcards_params_and_rest() {
        assert!(m("/v1/*/items", "/v1/abc/items"));
        assert!(!m("/v1/*/items", "/v1/items"));
        assert!(m("/users/:id", "/users/42"));
        assert!(!m("/users/:id", "/users/42/x"));
        assert!(m("/paid/**", "/paid"));
        assert!(m("/paid/**", "/paid/a/b/c"));
        assert!(!m("/paid/**", "/paidx"));
        assert!(m("/**", "/"));
        assert!(m("/a/", "/a"));
        assert!(m("/a", "/a/"));
    }

    #[test]
    fn normalisation_cannot_dodge_a_priced_route() {
        assert!(m("/paid/**", "/free/../paid/x"));
        assert!(m("/paid/**", "/./paid//x"));
        assert!(m("/paid/**", "/%70aid/x"));
        assert!(NormalPath::parse("/free/../paid/x").unwrap().rewritten);
        assert_eq!(NormalPath::parse("/free/../paid/x").unwrap().to_path(), "/paid/x");
        assert_eq!(NormalPath::parse("/free%2F..%2Fpaid"), Err(PathError::Ambiguous));
        assert_eq!(NormalPath::parse("/a\\b"), Err(PathError::Ambiguous));
        assert_eq!(NormalPath::parse("/paid;x=1/data"), Err(PathError::Ambiguous));
        assert_eq!(NormalPath::parse("/paid%3Bx/data"), Err(PathError::Ambiguous));
        assert_eq!(NormalPath::parse("/\u{11}free/../paid"), Err(PathError::Ambiguous));
        assert_eq!(NormalPath::parse("/../etc"), Err(PathError::AboveRoot));
        assert_eq!(NormalPath::parse("/%zz"), Err(PathError::BadEncoding));
        assert_eq!(NormalPath::parse("http://x/"), Err(PathError::NotOriginForm));
    }

    #[test]
    fn priced_patterns_match_every_spelling_an_upstream_may_serve_and_free_ones_only_their_own() {
        for path in [
            "/PAID/item",
            "/%50AID/item",
            "/Paid/item",
            "/paid./item",
            "/paid%20/item",
            "/paid../x",
        ] {
            assert!(priced("/paid/**", path), "{path}");
            assert!(!m("/paid/**", path), "{path}");
        }
        assert!(priced("/Straße/:id", "/STRAẞE/1"));
        // Characters an upstream may fold to ASCII letters: ſ (upper S), ı (upper I), the Kelvin sign, İ.
        for path in ["/ſecret/x", "/%C5%BFECRET/x", "/secret/x"] {
            assert!(priced("/secret/**", path), "{path}");
        }
        assert!(priced("/paid/**", "/pa%C4%B1d/x"), "dotless i");
        assert!(priced("/paid/**", "/PA%C4%B0D/x"), "dotted capital I");
        assert!(priced("/kit/**", "/%E2%84%AAit/x"), "Kelvin sign");
        assert!(!m("/secret/**", "/ſecret/x"), "free patterns stay exact");
        assert!(priced("/v1/Search", "/V1/SEARCH/"));
        // Double encoding is refused rather than guessed at, however it is spelled.
        assert_eq!(NormalPath::parse("/%2570aid/x"), Err(PathError::Ambiguous));
        assert_eq!(NormalPath::parse("/%257%30aid/x"), Err(PathError::Ambiguous));
        // Segments an upstream may trim into a dot-segment.
        assert_eq!(NormalPath::parse("/free/..%20/paid/x"), Err(PathError::Ambiguous));
        assert_eq!(NormalPath::parse("/free/.../paid"), Err(PathError::Ambiguous));
        assert!(NormalPath::parse("/100%25/x").is_ok());
    }

    #[test]
    fn bad_patterns_are_explained() {
        let e = |p: &str| PathPattern::parse(p, Matching::Exact).unwrap_err();
        assert!(e("paid").contains("start with '/'"));
        assert!(e("/a/**/b").contains("last segment"));
        assert!(e("/a*").contains("whole segment"));
    }

    #[test]
    fn hosts() {
        let h = HostPattern::parse("*.Example.com").unwrap();
        assert!(h.matches("api.example.com:8080"));
        assert!(!h.matches("example.com"));
        assert!(!h.matches("evilexample.com"));
        assert!(HostPattern::parse("api.example.com")
            .unwrap()
            .matches("API.example.com"));
    }
}
