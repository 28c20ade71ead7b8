//! One conformance suite for the three stores (memory, SQLite, a real `redis-server`): the same steps, the
//! same answers. Claims are raced on several threads behind a barrier, so a store whose insert or swap were
//! not atomic would let two requests hold one payment; shared records (batch-settlement channels) are
//! changed by racing read-modify-writes, none of which may be lost.

mod support;

use std::sync::Arc;

use alloy::primitives::{Address, B256};
use support::{free_port, Redis};
use x402_gateway::config::{RedisDurability, StoreUrl};
use x402_gateway::core::time::Clock;
use x402_gateway::gateway::channels::{self, Change};
use x402_gateway::gateway::store::{self, ClaimState, Insert, Record, Store};
use x402_gateway::protocol::exact::AuthorizationId;
use x402_gateway::protocol::network::Network;

const NOW: u64 = 1_800_000_000;

fn id(n: u8) -> AuthorizationId {
    AuthorizationId {
        network: Network::new(84_532),
        asset: Address::repeat_byte(0xaa),
        payer: Address::repeat_byte(n),
        nonce: B256::repeat_byte(n),
    }
}

fn record(state: ClaimState, holder: u64) -> Record {
    Record {
        state,
        payment: [7; 32],
        holder,
        expires_at: NOW + 600,
        lease_until: NOW + 60,
        facilitator: 0,
        charge: None,
    }
}

/// Opens a store off the async threads (the Redis store checks its server once, blocking).
async fn open(url: StoreUrl) -> Arc<dyn Store> {
    tokio::task::spawn_blocking(move || store::open(&url, 1_000, Clock::fixed(NOW), RedisDurability::Enforce).unwrap())
        .await
        .unwrap()
}

/// The suite, against one store.
async fn conforms(name: &str, s: Arc<dyn Store>) {
    // Sixteen claims of one payment on several threads at once: exactly one wins.
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let racers: Vec<_> = (0..16u64)
        .map(|holder| {
            let (s, b) = (s.clone(), barrier.clone());
            tokio::spawn(async move {
                b.wait().await;
                s.insert(&id(1), record(ClaimState::InFlight, holder), NOW)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut winners = Vec::new();
    for (holder, r) in racers.into_iter().enumerate() {
        if r.await.unwrap() == Insert::Inserted {
            winners.push(holder as u64);
        }
    }
    assert_eq!(winners.len(), 1, "{name}: one winner, got {winners:?}");
    let holder = winners[0];
    let held = s.get(&id(1), NOW).await.unwrap().unwrap();
    assert_eq!(
        (held.holder, held.state.clone()),
        (holder, ClaimState::InFlight),
        "{name}"
    );

    // Only the holder moves it, and only from the state it is in.
    let settling = record(ClaimState::Settling, holder);
    assert!(
        !s.swap(&id(1), holder + 100, &ClaimState::InFlight, Some(settling.clone()), NOW)
            .await
            .unwrap(),
        "{name}: another holder"
    );
    assert!(
        !s.swap(&id(1), holder, &ClaimState::Settling, Some(settling.clone()), NOW)
            .await
            .unwrap(),
        "{name}: another state"
    );
    assert!(
        s.swap(&id(1), holder, &ClaimState::InFlight, Some(settling), NOW)
            .await
            .unwrap(),
        "{name}"
    );
    // Racing the next step: one swap wins.
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let (s, b) = (s.clone(), barrier.clone());
            tokio::spawn(async move {
                b.wait().await;
                let done = record(
                    ClaimState::Settled {
                        transaction: format!("0x{i:064x}"),
                    },
                    holder,
                );
                s.swap(&id(1), holder, &ClaimState::Settling, Some(done), NOW)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut wins = 0;
    for r in racers {
        wins += usize::from(r.await.unwrap());
    }
    assert_eq!(wins, 1, "{name}: one settlement recorded");
    assert!(
        matches!(
            s.insert(&id(1), record(ClaimState::InFlight, 999), NOW).await.unwrap(),
            Insert::Exists(_)
        ),
        "{name}: a settled payment is never claimed again"
    );

    // A lapsed in-flight lease frees it; a failed attempt holds nothing; a release deletes.
    s.insert(&id(2), record(ClaimState::InFlight, 1), NOW).await.unwrap();
    assert_eq!(
        s.insert(&id(2), record(ClaimState::InFlight, 2), NOW + 61)
            .await
            .unwrap(),
        Insert::Inserted,
        "{name}: lease lapsed"
    );
    assert!(s
        .swap(
            &id(2),
            2,
            &ClaimState::InFlight,
            Some(record(ClaimState::Failed { reason: "x".into() }, 2)),
            NOW + 61
        )
        .await
        .unwrap());
    assert_eq!(
        s.get(&id(2), NOW + 61).await.unwrap(),
        None,
        "{name}: a failed attempt is not live"
    );
    assert_eq!(
        s.insert(&id(3), record(ClaimState::InFlight, 3), NOW).await.unwrap(),
        Insert::Inserted
    );
    assert!(
        s.swap(&id(3), 3, &ClaimState::InFlight, None, NOW).await.unwrap(),
        "{name}: released"
    );
    assert_eq!(s.get(&id(3), NOW).await.unwrap(), None, "{name}");

    // Payments whose outcome is unknown are listed, and only those.
    s.insert(&id(4), record(ClaimState::InFlight, 4), NOW).await.unwrap();
    s.swap(
        &id(4),
        4,
        &ClaimState::InFlight,
        Some(record(
            ClaimState::InDoubt {
                transaction: "0xfeed".into(),
            },
            4,
        )),
        NOW,
    )
    .await
    .unwrap();
    let unknown = s.unknown(NOW).await.unwrap();
    assert_eq!(unknown.len(), 1, "{name}: {unknown:?}");
    assert_eq!(
        (unknown[0].0.clone(), unknown[0].1.state.clone()),
        (
            id(4),
            ClaimState::InDoubt {
                transaction: "0xfeed".into()
            }
        ),
        "{name}"
    );

    // Plain entries (payment identifiers): first writer wins until it expires.
    assert_eq!(
        s.put_new("x402:pid:a", "first".into(), NOW + 60, NOW).await.unwrap(),
        None,
        "{name}"
    );
    assert_eq!(
        s.put_new("x402:pid:a", "second".into(), NOW + 60, NOW)
            .await
            .unwrap()
            .as_deref(),
        Some("first"),
        "{name}"
    );
    s.remove("x402:pid:a").await.unwrap();
    assert_eq!(
        s.put_new("x402:pid:a", "third".into(), NOW + 60, NOW).await.unwrap(),
        None,
        "{name}: removed"
    );

    // Shared records (batch-settlement channels): a swap happens only over the value expected.
    let k = "x402:channel:test:a";
    assert!(
        !s.swap_entry(k, Some("x"), Some("y".into()), NOW + 60, NOW)
            .await
            .unwrap(),
        "{name}: absent"
    );
    assert!(
        s.swap_entry(k, None, Some("1".into()), NOW + 60, NOW).await.unwrap(),
        "{name}"
    );
    assert!(
        !s.swap_entry(k, None, Some("2".into()), NOW + 60, NOW).await.unwrap(),
        "{name}: present"
    );
    assert!(
        !s.swap_entry(k, Some("9"), Some("2".into()), NOW + 60, NOW)
            .await
            .unwrap(),
        "{name}: other"
    );
    assert_eq!(s.entry(k, NOW).await.unwrap().as_deref(), Some("1"), "{name}");
    assert!(
        s.swap_entry(k, Some("1"), None, NOW + 60, NOW).await.unwrap(),
        "{name}: delete"
    );
    assert_eq!(s.entry(k, NOW).await.unwrap(), None, "{name}: deleted");
    // Sixteen read-modify-writes of one record on several threads at once: none is lost.
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let writers: Vec<_> = (0..16u64)
        .map(|i| {
            let (s, b) = (s.clone(), barrier.clone());
            tokio::spawn(async move {
                b.wait().await;
                channels::update(
                    s.as_ref(),
                    "x402:channel:test:count",
                    NOW + 60,
                    NOW,
                    |n: Option<Vec<u64>>| {
                        let mut seen = n.unwrap_or_default();
                        seen.push(i);
                        (Change::Put(seen), ())
                    },
                )
                .await
                .unwrap()
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let mut seen: Vec<u64> =
        serde_json::from_str(&s.entry("x402:channel:test:count", NOW).await.unwrap().unwrap()).unwrap();
    seen.sort_unstable();
    assert_eq!(seen, (0..16).collect::<Vec<_>>(), "{name}: every writer's change is in");
    s.ping().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_sqlite_and_redis_answer_every_step_alike_and_atomically() {
    conforms("memory", open(StoreUrl::Memory).await).await;
    let dir = tempfile::tempdir().unwrap();
    conforms("sqlite", open(StoreUrl::Sqlite(dir.path().join("claims.db"))).await).await;
    let redis = Redis::start_on(free_port()).await;
    conforms("redis", open(StoreUrl::Redis(redis.url())).await).await;
}
