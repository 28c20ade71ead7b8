//! Test-only fault hooks, compiled in only with the `test-faults` feature (`scripts/test` builds with it; a
//! binary built to run has none). With `X402_TEST_PAUSE_AT=<point>` and `X402_TEST_PAUSE_FILE=<path>` in its
//! environment, such a gateway stops a request at that point, writes the file and waits forever, so a test
//! can kill the process there with SIGKILL and see what a crash at the worst moment leaves behind. Without
//! the feature a point is an empty function.

#[cfg(feature = "test-faults")]
use std::path::PathBuf;
#[cfg(feature = "test-faults")]
use std::sync::OnceLock;

/// A place in a paid request where a crash is interesting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// The authorization is claimed; nothing was sent for settlement.
    AfterClaim,
    /// `/settle` answered; its outcome is not recorded yet.
    DuringSettle,
    /// The settlement is recorded; the response has not left.
    AfterSettle,
}

#[cfg(feature = "test-faults")]
impl Point {
    fn name(self) -> &'static str {
        match self {
            Point::AfterClaim => "after_claim",
            Point::DuringSettle => "during_settle",
            Point::AfterSettle => "after_settle",
        }
    }
}

#[cfg(feature = "test-faults")]
fn armed() -> &'static Option<(String, PathBuf)> {
    static ARMED: OnceLock<Option<(String, PathBuf)>> = OnceLock::new();
    ARMED.get_or_init(|| {
        let at = std::env::var("X402_TEST_PAUSE_AT").ok()?;
        let file = std::env::var("X402_TEST_PAUSE_FILE").ok()?;
        Some((at, PathBuf::from(file)))
    })
}

/// Pauses forever at `point` if a test armed it.
#[cfg(feature = "test-faults")]
pub async fn point(point: Point) {
    if let Some((at, file)) = armed() {
        if at == point.name() {
            tracing::warn!(point = point.name(), "test fault hook: pausing here until killed");
            let _ = std::fs::write(file, point.name());
            std::future::pending::<()>().await;
        }
    }
}

/// Without the `test-faults` feature there is nowhere to pause.
#[cfg(not(feature = "test-faults"))]
pub async fn point(_: Point) {}
