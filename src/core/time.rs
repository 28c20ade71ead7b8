//! Time: the one clock every stage reads (unix seconds, injectable so tests can move it), and durations as
//! people write them in flags and config (`500ms`, `30s`, `2m`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Unix seconds from the system clock.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The clock the request path reads: the system's, or in tests a fixed time that the test moves.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    fixed: Option<Arc<AtomicU64>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock { fixed: None }
    }

    /// A clock stopped at `unix_secs` until [`Clock::set`] moves it.
    pub fn fixed(unix_secs: u64) -> Self {
        Clock {
            fixed: Some(Arc::new(AtomicU64::new(unix_secs))),
        }
    }

    /// Unix seconds now.
    pub fn now(&self) -> u64 {
        self.fixed.as_ref().map_or_else(unix_now, |t| t.load(Ordering::Relaxed))
    }

    /// Moves a fixed clock (and every clone of it); the system clock ignores this.
    pub fn set(&self, unix_secs: u64) {
        if let Some(t) = &self.fixed {
            t.store(unix_secs, Ordering::Relaxed);
        }
    }
}

/// Parses `500ms`, `30s`, `2m`, `6h`, `30d`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let err = || format!("{s:?} is not a duration: write e.g. 500ms, 30s, 2m, 6h or 30d");
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = num.parse().map_err(|_| err())?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        "h" => Ok(Duration::from_secs(n.saturating_mul(3_600))),
        "d" => Ok(Duration::from_secs(n.saturating_mul(86_400))),
        _ => Err(err()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_clock_moves_only_when_told_and_clones_share_it() {
        let c = Clock::fixed(100);
        let twin = c.clone();
        assert_eq!(c.now(), 100);
        twin.set(250);
        assert_eq!(c.now(), 250);
        assert!(Clock::system().now() > 1_700_000_000);
    }

    #[test]
    fn durations_as_written() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("6h"), Ok(Duration::from_secs(21_600)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(2_592_000)));
        assert!(parse_duration("1w").unwrap_err().contains("500ms, 30s, 2m, 6h or 30d"));
    }
}
