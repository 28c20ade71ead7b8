//! `batch-settlement` through the gateway: the official Python client deposits once and pays each later
//! call with a voucher the gateway checks by itself (no facilitator call), then takes the rest back by
//! refund; on the real devnet, through our facilitator, each balance checked on chain.

mod support;

use alloy::primitives::aliases::U40;
use alloy::primitives::{Address, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use alloy::signers::SignerSync;
use alloy::sol_types::SolCall;
use serde_json::{json, Value};
use support::{
    decode_header, encode_header, get, python, run_client, upstream_received, Devnet, Facilitator, Gateway, Redis,
    Upstream,
};
use x402_gateway::protocol::batch::{self, reason, ChannelConfig, IX402BatchSettlement, SETTLEMENT};

/// "$0.001" of the devnet's 6-decimal token: one call.
const PRICE: u64 = 1_000;
/// "$0.01": the deposit the gateway asks for at least.
const MIN_DEPOSIT: u64 = 10_000;

/// A devnet, our facilitator, the echo upstream and a gateway selling `/batch/**` by batch settlement.
struct BatchStack {
    devnet: Devnet,
    facilitator: Facilitator,
    upstream: Upstream,
    gateway: Gateway,
    pay_to: Address,
    admin: String,
}

impl BatchStack {
    async fn start(extra: &str) -> BatchStack {
        let devnet = Devnet::start(31_337).await;
        let facilitator = Facilitator::start(&devnet, &[]).await;
        let upstream = Upstream::start().await;
        let (pay_to, _) = devnet.account(8);
        let (gateway, admin) = start_gateway(&devnet, &upstream.url, &facilitator.url, pay_to, extra).await;
        BatchStack {
            devnet,
            facilitator,
            upstream,
            gateway,
            pay_to,
            admin,
        }
    }

    /// Another gateway on this stack (a replica, or a restart), with `extra` top-level keys, and its admin
    /// URL.
    async fn another(&self, extra: &str) -> (Gateway, String) {
        start_gateway(
            &self.devnet,
            &self.upstream.url,
            &self.facilitator.url,
            self.pay_to,
            extra,
        )
        .await
    }

    /// `x402-gateway channels <action> --json` against this gateway.
    fn channels(&self, action: &str) -> Value {
        channels_at(&self.admin, action)
    }

    /// Account 0 opens its channel with the official client (a deposit and one call); what it printed, the
    /// offer, its key and its channel config, for vouchers of the test's own.
    async fn open(&self) -> (Value, Value, PrivateKeySigner, ChannelConfig) {
        let out = self.pay(0, 1, &[]);
        assert_eq!(out["statuses"], json!([200]), "{out}");
        let config = self.config(0, self.pay_to);
        (out, self.offer().await, signer(&self.devnet, 0), config)
    }

    /// The 402's batch-settlement offer.
    async fn offer(&self) -> Value {
        let r = get(&self.url(), &[]).await;
        decode_header(r.headers()["payment-required"].to_str().unwrap())["accepts"][0].clone()
    }

    /// The channel config the SDK client builds for account `i` (payer and payer authorizer alike).
    fn config(&self, i: usize, receiver: Address) -> ChannelConfig {
        let payer = signer(&self.devnet, i).address();
        ChannelConfig {
            payer,
            payerAuthorizer: payer,
            receiver,
            receiverAuthorizer: self.devnet.account(2).0,
            token: self.devnet.asset(),
            withdrawDelay: U40::from(900),
            salt: B256::ZERO,
        }
    }

    fn url(&self) -> String {
        format!("{}/batch/report", self.gateway.url)
    }

    /// `channels(channelId)`: (balance, totalClaimed).
    async fn channel(&self, id: B256) -> (u128, u128) {
        let call = IX402BatchSettlement::channelsCall { channelId: id }.abi_encode();
        let out = self
            .devnet
            .rpc(
                "eth_call",
                json!([{"to": SETTLEMENT.to_string(), "data": alloy::primitives::Bytes::from(call).to_string()}, "latest"]),
            )
            .await;
        let bytes = alloy::hex::decode(out.as_str().unwrap().trim_start_matches("0x")).unwrap();
        let r = IX402BatchSettlement::channelsCall::abi_decode_returns(&bytes).unwrap();
        (r.balance, r.totalClaimed)
    }

    /// The official client paying `calls` calls as account `account`, with `env` added.
    fn pay(&self, account: usize, calls: usize, env: &[(&str, &str)]) -> Value {
        let (_, key) = self.devnet.account(account);
        let calls = calls.to_string();
        let url = self.url();
        let mut all = vec![
            ("URL", url.as_str()),
            ("PRIVATE_KEY", key.as_str()),
            ("RPC_URL", self.devnet.state.rpc_url.as_str()),
            ("CALLS", calls.as_str()),
        ];
        all.extend_from_slice(env);
        run_client(&python(), "batch_python.py", &all, None)
    }
}

/// A gateway selling `/batch/**`, with an admin listener; its admin URL.
async fn start_gateway(
    devnet: &Devnet,
    upstream: &str,
    facilitator: &str,
    pay_to: Address,
    extra: &str,
) -> (Gateway, String) {
    let admin = format!("127.0.0.1:{}", support::free_port());
    // `extra` may go on with `batch_settlement:` (indented lines), so the admin listener comes after it.
    let extra = format!("{extra}admin_listen: \"{admin}\"\n");
    let gateway = Gateway::start(&table(devnet, upstream, facilitator, pay_to, &extra)).await;
    (gateway, format!("http://{admin}"))
}

/// `x402-gateway channels <action> --json` against the admin listener at `admin`.
fn channels_at(admin: &str, action: &str) -> Value {
    let out = std::process::Command::new(support::bin())
        .args(["channels", "--admin", admin, "--json", action])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "channels {action}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The devnet's account `i` as a signer.
fn signer(devnet: &Devnet, i: usize) -> PrivateKeySigner {
    devnet.account(i).1.parse().unwrap()
}

/// A `PAYMENT-SIGNATURE` carrying a voucher for `max` on `config`'s channel (or `channel`, when given),
/// signed by `key`, made out to `offer`.
fn voucher(offer: &Value, config: &ChannelConfig, channel: Option<B256>, max: u64, key: &PrivateKeySigner) -> String {
    let chain_id = 31_337;
    let id = channel.unwrap_or_else(|| batch::channel_id(config, chain_id));
    let signature = key
        .sign_hash_sync(&batch::voucher_digest(id, u128::from(max), chain_id))
        .unwrap();
    encode_header(&json!({
        "x402Version": 2,
        "accepted": offer,
        "payload": {
            "type": "voucher",
            "channelConfig": batch::config_json(config),
            "voucher": {
                "channelId": id.to_string(),
                "maxClaimableAmount": max.to_string(),
                "signature": alloy::primitives::Bytes::from(signature.as_bytes().to_vec()).to_string(),
            },
        },
    }))
}

/// Sends a payment header to `url`: the status, and the decoded `PAYMENT-REQUIRED` (a refusal) or
/// `PAYMENT-RESPONSE` (a receipt).
async fn send(url: &str, header: &str, extra: &[(&str, &str)]) -> (u16, Value) {
    let mut headers = vec![("payment-signature", header)];
    headers.extend_from_slice(extra);
    let r = get(url, &headers).await;
    let status = r.status().as_u16();
    let h = r.headers();
    let named = h.get("payment-required").or_else(|| h.get("payment-response"));
    (
        status,
        named.map(|v| decode_header(v.to_str().unwrap())).unwrap_or_default(),
    )
}

/// The standard test table plus `batch_settlement:` (the devnet's account 2 as receiver authorizer) and
/// `/batch/**` at $0.001 a call.
fn table(devnet: &Devnet, upstream: &str, facilitator: &str, pay_to: Address, extra: &str) -> String {
    let (_, authorizer) = devnet.account(2);
    let top = format!("batch_settlement:\n  receiver_authorizer_key: \"{authorizer}\"\n{extra}");
    let table = support::price_table(devnet, upstream, facilitator, pay_to, &top);
    format!(
        "{table}  - path: /batch/**\n    methods: [GET]\n    price: {{batch: \"$0.001\", min_deposit: \"$0.01\"}}\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_client_pays_many_calls_with_one_deposit_and_gets_the_rest_back() {
    let stack = BatchStack::start("").await;
    let (authorizer, _) = stack.devnet.account(2);
    let _ = stack.offer().await;

    // The 402 offers batch-settlement with every `extra` the SDK clients read.
    let challenge = get(&stack.url(), &[]).await;
    assert_eq!(challenge.status(), 402);
    let required = decode_header(challenge.headers()["payment-required"].to_str().unwrap());
    let offer = &required["accepts"][0];
    assert_eq!(offer["scheme"], "batch-settlement", "{required}");
    assert_eq!(offer["amount"], PRICE.to_string());
    assert_eq!(offer["extra"]["receiverAuthorizer"], authorizer.to_string());
    assert_eq!(offer["extra"]["withdrawDelay"], 900);
    assert_eq!(offer["extra"]["minDeposit"], MIN_DEPOSIT.to_string());
    assert_eq!(offer["extra"]["name"], stack.devnet.state.asset_name.as_str());

    let (payer, _) = stack.devnet.account(0);
    let payer_before = stack.devnet.balance(payer).await;
    let escrow_before = stack.devnet.balance(SETTLEMENT).await;
    let calls = 5usize;
    let out = stack.pay(0, calls, &[]);
    assert_eq!(out["statuses"], json!(vec![200; calls]), "{out}");
    let receipts = out["receipts"].as_array().unwrap();

    // The first call deposits (one transaction); every later one is a voucher checked by the gateway
    // alone: no transaction, the cumulative charge one price higher each time.
    let first = &receipts[0];
    assert_eq!(first["success"], true, "{first}");
    let tx = first["transaction"].as_str().unwrap();
    assert_eq!(stack.devnet.receipt(tx).await["status"], "0x1");
    assert_eq!(
        first["amount"],
        MIN_DEPOSIT.to_string(),
        "the deposit is the announced minimum"
    );
    assert_eq!(first["extra"]["chargedAmount"], PRICE.to_string());
    assert_eq!(
        first["extra"]["channelState"]["chargedCumulativeAmount"],
        PRICE.to_string()
    );
    assert_eq!(first["extra"]["channelState"]["balance"], MIN_DEPOSIT.to_string());
    let channel: B256 = first["extra"]["channelState"]["channelId"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    for (k, r) in receipts.iter().enumerate().skip(1) {
        assert_eq!(r["success"], true, "{r}");
        assert_eq!(r["transaction"], "", "a voucher sends no transaction: {r}");
        let charged = (k as u64 + 1) * PRICE;
        assert_eq!(
            r["extra"]["channelState"]["chargedCumulativeAmount"],
            charged.to_string(),
            "{r}"
        );
        assert_eq!(r["extra"]["chargedAmount"], PRICE.to_string());
        assert_eq!(r["payer"], format!("{payer:#x}"));
    }
    // One /verify and one /settle for the deposit; none for the vouchers.
    let f = &stack.facilitator;
    assert_eq!(f.counter("facilitator_verify_requests_total").await, 1);
    assert_eq!(f.counter("facilitator_settle_requests_total").await, 1);
    assert_eq!(stack.channel(channel).await, (u128::from(MIN_DEPOSIT), 0));
    assert_eq!(
        stack.devnet.balance(payer).await,
        payer_before - U256::from(MIN_DEPOSIT)
    );
    assert_eq!(
        stack.devnet.balance(SETTLEMENT).await,
        escrow_before + U256::from(MIN_DEPOSIT)
    );

    // `x402-gateway channels` shows what was charged and not yet claimed; `claim` claims it in one
    // transaction and `settle` pays it to the receiver in another.
    let charged = calls as u64 * PRICE;
    let listed = stack.channels("list");
    let row = &listed["channels"][0];
    assert_eq!(row["channel"], channel.to_string(), "{listed}");
    assert_eq!(row["charged"], charged.to_string());
    assert_eq!(row["unclaimed"], charged.to_string());
    assert_eq!(row["balance"], MIN_DEPOSIT.to_string());
    let claimed = stack.channels("claim");
    assert_eq!(claimed["channels"], 1, "{claimed}");
    let tx = claimed["transactions"][0].as_str().unwrap();
    assert_eq!(stack.devnet.receipt(tx).await["status"], "0x1");
    assert_eq!(
        stack.channel(channel).await,
        (u128::from(MIN_DEPOSIT), u128::from(charged))
    );
    assert_eq!(stack.channels("list")["channels"][0]["unclaimed"], "0");
    assert_eq!(
        stack.channels("claim")["transactions"],
        json!([]),
        "nothing left to claim"
    );
    let receiver_before = stack.devnet.balance(stack.pay_to).await;
    let settled = stack.channels("settle");
    let tx = settled["transactions"][0].as_str().unwrap();
    assert_eq!(stack.devnet.receipt(tx).await["status"], "0x1");
    assert_eq!(
        stack.devnet.balance(stack.pay_to).await,
        receiver_before + U256::from(charged)
    );

    // Two more calls on the same deposit, then the refund: the gateway claims what was charged and
    // returns the rest in one transaction, and answers without asking the upstream.
    let out = stack.pay(0, 2, &[("REFUND", "1")]);
    assert_eq!(out["statuses"], json!([200, 200]), "{out}");
    let charged = charged + 2 * PRICE;
    let refund = &out["refund"];
    assert_eq!(refund["success"], true, "{out}");
    assert_eq!(refund["amount"], (MIN_DEPOSIT - charged).to_string());
    assert_eq!(
        stack.devnet.receipt(refund["transaction"].as_str().unwrap()).await["status"],
        "0x1"
    );
    assert_eq!(stack.channel(channel).await, (u128::from(charged), u128::from(charged)));
    assert_eq!(stack.devnet.balance(payer).await, payer_before - U256::from(charged));
    // The refund's claim is settled next: the receiver has exactly every call's price, no more.
    stack.channels("settle");
    assert_eq!(
        stack.devnet.balance(stack.pay_to).await,
        receiver_before + U256::from(charged)
    );
    assert_eq!(stack.devnet.balance(SETTLEMENT).await, escrow_before);
    assert_eq!(
        f.counter("facilitator_verify_requests_total").await,
        2,
        "the deposit and the refund"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_vouchers_are_refused_with_the_specs_reason_and_nothing_is_served() {
    let stack = BatchStack::start("").await;
    let (out, offer, payer, config) = stack.open().await;
    let id = batch::channel_id(&config, 31_337);
    assert_eq!(out["receipts"][0]["extra"]["channelState"]["channelId"], id.to_string());
    let url = stack.url();
    let upstream = &stack.upstream.url;
    let f = &stack.facilitator;
    let verified = f.counter("facilitator_verify_requests_total").await;

    // The next voucher is served (the baseline); everything below is refused before the upstream.
    assert_eq!(
        send(&url, &voucher(&offer, &config, None, 2 * PRICE, &payer), &[])
            .await
            .0,
        200
    );
    let reached = upstream_received(upstream).await;
    let stranger = signer(&stack.devnet, 3);
    let elsewhere = stack.config(0, stack.devnet.account(5).0);
    let cases = [
        (
            "the same voucher again",
            voucher(&offer, &config, None, 2 * PRICE, &payer),
            reason::CUMULATIVE_AMOUNT_MISMATCH,
        ),
        (
            "below what was charged",
            voucher(&offer, &config, None, PRICE, &payer),
            reason::CUMULATIVE_AMOUNT_MISMATCH,
        ),
        (
            "another channel's id",
            voucher(&offer, &config, Some(B256::repeat_byte(7)), 3 * PRICE, &payer),
            reason::CHANNEL_ID_MISMATCH,
        ),
        (
            "another receiver",
            voucher(&offer, &elsewhere, None, 3 * PRICE, &payer),
            reason::RECEIVER_MISMATCH,
        ),
        (
            "signed by another key",
            voucher(&offer, &config, None, 3 * PRICE, &stranger),
            reason::VOUCHER_SIGNATURE,
        ),
    ];
    for (case, header, why) in cases {
        let (status, required) = send(&url, &header, &[]).await;
        assert_eq!(status, 402, "{case}");
        assert_eq!(required["error"], why, "{case}: {required}");
        if why == reason::CUMULATIVE_AMOUNT_MISMATCH {
            // The corrective 402 carries the channel as the gateway knows it, as the SDK clients read it.
            let extra = &required["accepts"][0]["extra"];
            assert_eq!(
                extra["channelState"]["chargedCumulativeAmount"],
                (2 * PRICE).to_string(),
                "{case}"
            );
            assert_eq!(
                extra["voucherState"]["signedMaxClaimable"],
                (2 * PRICE).to_string(),
                "{case}"
            );
        }
    }
    assert_eq!(upstream_received(upstream).await, reached, "nothing was served");

    // Charged up to the deposit, then one voucher past it.
    for k in 3..=MIN_DEPOSIT / PRICE {
        let (status, r) = send(&url, &voucher(&offer, &config, None, k * PRICE, &payer), &[]).await;
        assert_eq!(status, 200, "{r}");
    }
    let reached = upstream_received(upstream).await;
    let past = voucher(&offer, &config, None, MIN_DEPOSIT + PRICE, &payer);
    let (status, required) = send(&url, &past, &[]).await;
    assert_eq!(
        (status, required["error"].as_str()),
        (402, Some(reason::CUMULATIVE_EXCEEDS_BALANCE))
    );
    assert_eq!(upstream_received(upstream).await, reached);
    // Every voucher was judged here: the facilitator saw none of them.
    assert_eq!(f.counter("facilitator_verify_requests_total").await, verified);
    let row = &stack.channels("list")["channels"][0];
    assert_eq!(row["charged"], MIN_DEPOSIT.to_string(), "{row}");
}

/// Two vouchers for the same next amount at once, on `first` and `second` (one gateway, or two replicas
/// sharing a store): exactly one is served; the other is told the channel is busy (or, if it came after,
/// that its voucher is stale). Returns nothing; panics otherwise.
async fn race(first: &str, second: &str, header: &str, upstream: &str) {
    let reached = upstream_received(upstream).await;
    let slow = [("x-echo-delay-ms", "700")];
    let (a, b) = tokio::join!(send(first, header, &slow), send(second, header, &slow));
    let mut statuses = [a.0, b.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 402], "{a:?} {b:?}");
    let refused = if a.0 == 402 { &a.1 } else { &b.1 };
    let why = refused["error"].as_str().unwrap_or_default();
    assert!(
        why == reason::CHANNEL_BUSY || why == reason::CUMULATIVE_AMOUNT_MISMATCH,
        "{refused}"
    );
    assert_eq!(upstream_received(upstream).await, reached + 1, "served once");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_request_per_channel_at_a_time_on_one_gateway_and_across_replicas_on_redis() {
    let redis = Redis::start_on(support::free_port()).await;
    let store = format!("store: \"{}\"\n", redis.url());
    let stack = BatchStack::start(&store).await;
    let (replica, replica_admin) = stack.another(&store).await;
    let (_, offer, payer, config) = stack.open().await;
    let url = stack.url();
    let on_replica = format!("{}/batch/report", replica.url);

    race(
        &url,
        &url,
        &voucher(&offer, &config, None, 2 * PRICE, &payer),
        &stack.upstream.url,
    )
    .await;
    race(
        &url,
        &on_replica,
        &voucher(&offer, &config, None, 3 * PRICE, &payer),
        &stack.upstream.url,
    )
    .await;
    // The replica sees the charges the first gateway recorded: the next voucher continues from them.
    let (status, r) = send(&on_replica, &voucher(&offer, &config, None, 4 * PRICE, &payer), &[]).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        r["extra"]["channelState"]["chargedCumulativeAmount"],
        (4 * PRICE).to_string()
    );
    assert_eq!(
        channels_at(&replica_admin, "list")["channels"][0]["charged"],
        (4 * PRICE).to_string()
    );
}

/// SIGKILL right after a served voucher: the restarted gateway still knows the charge, claims it, and
/// never claims it twice.
async fn a_served_voucher_survives_sigkill(store: &str) {
    let mut stack = BatchStack::start(store).await;
    let (_, offer, payer, config) = stack.open().await;
    let (status, _) = send(&stack.url(), &voucher(&offer, &config, None, 2 * PRICE, &payer), &[]).await;
    assert_eq!(status, 200);
    stack.gateway.proc.child.kill().unwrap();
    let _ = stack.gateway.proc.child.wait();
    let (restarted, admin) = stack.another(store).await;
    stack.gateway = restarted;
    stack.admin = admin;
    assert_eq!(
        stack.channels("list")["channels"][0]["unclaimed"],
        (2 * PRICE).to_string()
    );
    let claimed = stack.channels("claim");
    assert_eq!(claimed["channels"], 1, "{claimed}");
    let id = batch::channel_id(&config, 31_337);
    assert_eq!(
        stack.channel(id).await,
        (u128::from(MIN_DEPOSIT), u128::from(2 * PRICE))
    );
    assert_eq!(
        stack.channels("claim")["transactions"],
        json!([]),
        "nothing is claimed twice"
    );
    // And the channel goes on from there.
    let (status, _) = send(&stack.url(), &voucher(&offer, &config, None, 3 * PRICE, &payer), &[]).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_a_served_voucher_survives_sigkill_and_is_claimed_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("store: \"sqlite:{}\"\n", dir.path().join("claims.db").display());
    a_served_voucher_survives_sigkill(&store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_a_served_voucher_survives_sigkill_and_is_claimed_once() {
    let redis = Redis::start_on(support::free_port()).await;
    a_served_voucher_survives_sigkill(&format!("store: \"{}\"\n", redis.url())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_facilitator_down_vouchers_still_work_and_the_claimer_retries() {
    // The background claimer, every second.
    let mut stack = BatchStack::start("  claim_every: 1s\n  settle_every: 1s\n").await;
    let (_, offer, payer, config) = stack.open().await;
    let id = batch::channel_id(&config, 31_337);
    // Claimed and settled in the background, with nobody asking.
    support::wait_for("the background claim", std::time::Duration::from_secs(30), || async {
        stack.channel(id).await.1 == u128::from(PRICE)
    })
    .await;
    let listen = stack.facilitator.url.trim_start_matches("http://").to_owned();
    stack.facilitator.proc.child.kill().unwrap();
    let _ = stack.facilitator.proc.child.wait();

    for k in 2..=4 {
        let (status, r) = send(&stack.url(), &voucher(&offer, &config, None, k * PRICE, &payer), &[]).await;
        assert_eq!(status, 200, "a voucher needs no facilitator: {r}");
    }
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(
        stack.channel(id).await.1,
        u128::from(PRICE),
        "nothing claimed while it is down"
    );
    // Back on the same address: the claimer's next round claims what waited.
    stack.facilitator.proc = support::spawn(
        &format!("facilitator-{listen}-again"),
        &[
            "facilitator",
            "--listen",
            &listen,
            "--rpc-url",
            &stack.devnet.state.rpc_url,
        ],
        &[(
            "X402_FACILITATOR_PRIVATE_KEY",
            stack.devnet.state.facilitator_private_key.as_str(),
        )],
    );
    support::wait_for(
        "the claim after the facilitator is back",
        std::time::Duration::from_secs(30),
        || async { stack.channel(id).await.1 == u128::from(4 * PRICE) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_ts_client_pays_with_one_deposit_and_gets_the_rest_back() {
    let stack = BatchStack::start("").await;
    let (payer, key) = stack.devnet.account(4);
    let before = stack.devnet.balance(payer).await;
    let receiver_before = stack.devnet.balance(stack.pay_to).await;
    let url = stack.url();
    let env = [
        ("URL", url.as_str()),
        ("PRIVATE_KEY", key.as_str()),
        ("RPC_URL", stack.devnet.state.rpc_url.as_str()),
        ("CALLS", "3"),
        ("REFUND", "1"),
    ];
    let out = run_client(&support::node(), "batch_ts.mjs", &env, None);
    assert_eq!(out["statuses"], json!([200, 200, 200]), "{out}");
    let receipts = out["receipts"].as_array().unwrap();
    assert!(receipts[0]["transaction"].as_str().unwrap().starts_with("0x"), "{out}");
    assert_eq!(receipts[1]["transaction"], "", "{out}");
    assert_eq!(
        receipts[2]["extra"]["channelState"]["chargedCumulativeAmount"],
        (3 * PRICE).to_string()
    );
    assert_eq!(out["refund"]["success"], true, "{out}");
    assert_eq!(stack.devnet.balance(payer).await, before - U256::from(3 * PRICE));
    stack.channels("settle");
    assert_eq!(
        stack.devnet.balance(stack.pay_to).await,
        receiver_before + U256::from(3 * PRICE)
    );
}

/// Sends `function(config[, amount])` of the batch-settlement contract from `from` (an unlocked anvil
/// account); whether it succeeded.
async fn payer_call(devnet: &Devnet, from: Address, signature: &str, data: Vec<u8>) -> bool {
    let selector = &alloy::primitives::keccak256(signature.as_bytes())[..4];
    let input = alloy::primitives::Bytes::from([selector, data.as_slice()].concat()).to_string();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_sendTransaction",
        "params": [{"from": from.to_string(), "to": SETTLEMENT.to_string(), "data": input, "gas": "0x100000"}]});
    let resp: Value = reqwest::Client::new()
        .post(&devnet.state.rpc_url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    match resp["result"].as_str() {
        Some(tx) => devnet.receipt(tx).await["status"] == "0x1",
        None => false,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payer_withdraws_alone_after_the_delay_but_never_what_was_claimed_before() {
    let stack = BatchStack::start("").await;
    let (payer_address, _) = stack.devnet.account(0);
    let before = stack.devnet.balance(payer_address).await;
    let out = stack.pay(0, 3, &[]);
    assert_eq!(out["statuses"], json!([200, 200, 200]), "{out}");
    let config = stack.config(0, stack.pay_to);
    let config_type = "(address,address,address,address,address,uint40,bytes32)";
    let initiate = format!("initiateWithdraw({config_type},uint128)");
    let finalize = format!("finalizeWithdraw({config_type})");
    use alloy::sol_types::SolValue;
    // The payer asks for everything back, including the three calls the gateway has not claimed yet.
    let all = (config.clone(), u128::from(MIN_DEPOSIT)).abi_encode_params();
    assert!(payer_call(&stack.devnet, payer_address, &initiate, all).await);
    // The gateway claims them within the delay; before it has passed, the payer cannot finish.
    assert_eq!(stack.channels("claim")["channels"], 1);
    let only = (config.clone(),).abi_encode_params();
    assert!(
        !payer_call(&stack.devnet, payer_address, &finalize, only.clone()).await,
        "the delay has not passed"
    );
    stack.devnet.rpc("evm_increaseTime", json!([900])).await;
    stack.devnet.rpc("evm_mine", json!([])).await;
    assert!(payer_call(&stack.devnet, payer_address, &finalize, only).await);
    // The payer got back the deposit less the three calls; the receiver gets exactly those.
    let charged = 3 * PRICE;
    assert_eq!(stack.devnet.balance(payer_address).await, before - U256::from(charged));
    let receiver_before = stack.devnet.balance(stack.pay_to).await;
    stack.channels("settle");
    assert_eq!(
        stack.devnet.balance(stack.pay_to).await,
        receiver_before + U256::from(charged)
    );
}
