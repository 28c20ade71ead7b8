//! `batch-settlement` through the gateway: the official Python client deposits once and pays each later
//! call with a voucher the gateway checks by itself (no facilitator call), then takes the rest back by
//! refund; on the real devnet, through our facilitator, each balance checked on chain.

mod support;

use alloy::primitives::{Address, B256, U256};
use alloy::sol_types::SolCall;
use serde_json::{json, Value};
use support::{decode_header, get, python, run_client, Devnet, Facilitator, Gateway, Upstream};
use x402_gateway::protocol::batch::{IX402BatchSettlement, SETTLEMENT};

/// "$0.001" of the devnet's 6-decimal token: one call.
const PRICE: u64 = 1_000;
/// "$0.01": the deposit the gateway asks for at least.
const MIN_DEPOSIT: u64 = 10_000;

/// A devnet, our facilitator, the echo upstream and a gateway selling `/batch/**` by batch settlement.
struct BatchStack {
    devnet: Devnet,
    facilitator: Facilitator,
    _upstream: Upstream,
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
        let admin = format!("127.0.0.1:{}", support::free_port());
        let extra = format!("admin_listen: \"{admin}\"\n{extra}");
        let gateway = Gateway::start(&table(&devnet, &upstream.url, &facilitator.url, pay_to, &extra)).await;
        BatchStack {
            devnet,
            facilitator,
            _upstream: upstream,
            gateway,
            pay_to,
            admin: format!("http://{admin}"),
        }
    }

    /// `x402-gateway channels <action> --json` against this gateway.
    fn channels(&self, action: &str) -> Value {
        let out = std::process::Command::new(support::bin())
            .args(["channels", "--admin", &self.admin, "--json", action])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "channels {action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
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
