//! Every rule about an authorization's time window, in one place: when it may be used (`validAfter`,
//! `validBefore` with the spec's buffer), how far ahead a server accepts `validBefore`, how long a claim
//! outlives it, and the window the paying client signs.

use alloy::primitives::U256;

use crate::protocol::exact::{Authorization, Rejection};
use crate::protocol::payment::Payment;
use crate::protocol::permit2::Permit2Authorization;
use crate::protocol::reason;

/// `validBefore` must leave this much time for the settlement to land (x402-notes §10.1 step 8).
pub const VALID_BEFORE_BUFFER_SECS: u64 = 6;
/// How far past `now + maxTimeoutSeconds` a `validBefore` may reach (client clock skew). The reference
/// clients set `validBefore = now + maxTimeoutSeconds`; a much later one would keep a claim alive longer than
/// the route allows.
pub const VALID_BEFORE_SLACK_SECS: u64 = 300;
/// Claims outlive `validBefore` by this much, so clock skew cannot reopen a settled authorization.
pub const CLAIM_GRACE_SECS: u64 = 60;
/// The reference clients date authorizations this far back, to absorb clock skew.
pub const VALID_AFTER_SKEW_SECS: u64 = 600;

/// `validAfter <= now` and `validBefore >= now + 6 s`.
pub fn check(auth: &Authorization, now: u64) -> Result<(), Rejection> {
    if auth.valid_before < U256::from(now.saturating_add(VALID_BEFORE_BUFFER_SECS)) {
        return Err(Rejection::new(
            reason::VALID_BEFORE,
            format!(
                "authorization expired or expires within {VALID_BEFORE_BUFFER_SECS}s (validBefore {})",
                auth.valid_before
            ),
        ));
    }
    if auth.valid_after > U256::from(now) {
        return Err(Rejection::new(
            reason::VALID_AFTER,
            format!("authorization is not valid until {} (now {now})", auth.valid_after),
        ));
    }
    Ok(())
}

/// The same window for a Permit2 authorization: `witness.validAfter <= now` and `deadline >= now + 6 s`.
pub fn check_permit2(auth: &Permit2Authorization, now: u64) -> Result<(), Rejection> {
    if auth.deadline < U256::from(now.saturating_add(VALID_BEFORE_BUFFER_SECS)) {
        return Err(Rejection::new(
            reason::PERMIT2_DEADLINE_EXPIRED,
            format!(
                "the permit expired or expires within {VALID_BEFORE_BUFFER_SECS}s (deadline {})",
                auth.deadline
            ),
        ));
    }
    if auth.valid_after > U256::from(now) {
        return Err(Rejection::new(
            reason::PERMIT2_NOT_YET_VALID,
            format!("the permit is not valid until {} (now {now})", auth.valid_after),
        ));
    }
    Ok(())
}

/// The window of a payment ([`check`] or [`check_permit2`]), and its end (`validBefore`, a permit's
/// `deadline`) no later than `now + max_timeout_seconds` plus the slack: this bounds how long the gateway
/// must remember the authorization.
pub fn check_for_route(payment: &Payment, max_timeout_seconds: u64, now: u64) -> Result<(), Rejection> {
    let too_late = match payment {
        Payment::Eip3009(p) => {
            check(&p.authorization, now)?;
            reason::VALID_BEFORE
        }
        Payment::Permit2(p) => {
            check_permit2(&p.authorization, now)?;
            reason::PERMIT2_DEADLINE_EXPIRED
        }
    };
    let latest = now
        .saturating_add(max_timeout_seconds)
        .saturating_add(VALID_BEFORE_SLACK_SECS);
    if valid_until(payment) > U256::from(latest) {
        return Err(Rejection::new(
            too_late,
            "the authorization's end (validBefore or deadline) is further ahead than this route's maxTimeoutSeconds allows",
        ));
    }
    Ok(())
}

/// When a payment can no longer be used on chain: `validBefore`, or a permit's `deadline`.
fn valid_until(payment: &Payment) -> U256 {
    match payment {
        Payment::Eip3009(p) => p.authorization.valid_before,
        Payment::Permit2(p) => p.authorization.deadline,
    }
}

/// Unix time until which a claim on `payment` is kept: its end plus a grace, but never past the route's
/// horizon (an end beyond it is refused anyway; this bounds what is stored before that check).
pub fn claim_expiry(payment: &Payment, max_timeout_seconds: u64, now: u64) -> u64 {
    let horizon = now
        .saturating_add(max_timeout_seconds)
        .saturating_add(VALID_BEFORE_SLACK_SECS);
    u64::try_from(valid_until(payment))
        .unwrap_or(u64::MAX)
        .min(horizon)
        .saturating_add(CLAIM_GRACE_SECS)
}

/// `(validAfter, validBefore)` a paying client signs at `now` for a route with `max_timeout_seconds`.
pub fn for_client(now: u64, max_timeout_seconds: u64) -> (u64, u64) {
    (
        now.saturating_sub(VALID_AFTER_SKEW_SECS),
        now.saturating_add(max_timeout_seconds),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::{Address, B256};

    fn auth(after: u64, before: u64) -> Authorization {
        Authorization {
            from: Address::ZERO,
            to: Address::ZERO,
            value: U256::from(1),
            valid_after: U256::from(after),
            valid_before: U256::from(before),
            nonce: B256::ZERO,
        }
    }

    fn paid(a: &Authorization) -> Payment {
        Payment::Eip3009(crate::protocol::exact::ExactPayload {
            authorization: a.clone(),
            signature: Default::default(),
        })
    }

    #[test]
    fn the_window_has_a_six_second_buffer_and_a_bounded_horizon() {
        let a = auth(100, 1000);
        assert!(check(&a, 994).is_ok());
        assert_eq!(check(&a, 995).unwrap_err().reason, reason::VALID_BEFORE);
        assert_eq!(check(&a, 99).unwrap_err().reason, reason::VALID_AFTER);
        // 1000 <= 400 + 300 + 300, but not <= 300 + 300 + 300.
        assert!(check_for_route(&paid(&a), 300, 400).is_ok());
        assert_eq!(
            check_for_route(&paid(&a), 300, 300).unwrap_err().reason,
            reason::VALID_BEFORE
        );
        assert_eq!(claim_expiry(&paid(&a), 300, 400), 1060);
        assert_eq!(
            claim_expiry(&paid(&auth(0, u64::MAX)), 300, 400),
            400 + 300 + 300 + 60,
            "clamped to the horizon"
        );
        assert_eq!(for_client(10_000, 120), (9_400, 10_120));
    }
}
