//! Smart-wallet payers: an ERC-1271 contract wallet on the devnet (`X402TestWallet`, one owner key) pays
//! through the gateway with the official TypeScript client, deployed (ERC-1271) and not yet deployed
//! (EIP-6492, deployed by our facilitator from an allowed factory). Balances, receipts and code on chain
//! are the evidence; a facilitator that does not deploy from the factory, and a signature the wallet does
//! not accept, are refused with nothing moved.

mod support;

use alloy::primitives::{Address, Bytes, U256};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol;
use alloy::sol_types::SolCall;
use serde_json::Value;
use support::{node, price_table, run_client, Devnet, Facilitator, Gateway, Upstream};
use x402_gateway::tools::chain::Chain;

sol! {
    #[sol(rpc)]
    interface IWalletFactory {
        function createAccount(address owner, uint256 salt) external returns (address);
        function getAddress(address owner, uint256 salt) external view returns (address);
    }
    #[sol(rpc)]
    interface IToken {
        function transfer(address to, uint256 value) external returns (bool);
    }
}

const PRICE: u64 = 1000;

/// The official TS client paying `url` as the contract wallet `wallet` of `owner_key`, EIP-6492-wrapped
/// with `factory_call` when given.
fn pay_as_wallet(url: &str, owner_key: &str, wallet: Address, factory_call: Option<(Address, &Bytes)>) -> Value {
    let wallet = wallet.to_string();
    let mut env = vec![
        ("URL", url.to_owned()),
        ("PRIVATE_KEY", owner_key.to_owned()),
        ("WALLET", wallet),
    ];
    if let Some((factory, data)) = factory_call {
        env.push(("WALLET_FACTORY", factory.to_string()));
        env.push(("WALLET_FACTORY_DATA", data.to_string()));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    run_client(&node(), "pay_v2.mjs", &env, None)
}

async fn has_code(devnet: &Devnet, who: Address) -> bool {
    devnet.chain().await.has_code(who).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn contract_wallets_pay_deployed_by_erc1271_and_counterfactual_by_eip6492_through_an_allowed_factory() {
    let devnet = Devnet::start(31_337).await;
    let factory: Address = devnet.state.wallet_factory.parse().unwrap();
    let (owner, owner_key) = devnet.account(3);
    let owner_chain = Chain::connect(
        &devnet.state.rpc_url.parse().unwrap(),
        Some(owner_key.parse::<PrivateKeySigner>().unwrap()),
    )
    .await
    .unwrap();
    let wallets = IWalletFactory::new(factory, owner_chain.provider());
    let token = IToken::new(devnet.asset(), owner_chain.provider());
    let (deployed, counterfactual) = (
        wallets.getAddress(owner, U256::from(1)).call().await.unwrap(),
        wallets.getAddress(owner, U256::from(2)).call().await.unwrap(),
    );
    // One wallet deployed now; both funded from the owner (an address with no code can hold tokens).
    let mined = |tx: alloy::rpc::types::TransactionRequest| {
        let chain = &owner_chain;
        async move {
            let hash = chain.send(tx).await.unwrap();
            chain.wait(hash, std::time::Duration::from_secs(30)).await.unwrap();
        }
    };
    mined(wallets.createAccount(owner, U256::from(1)).into_transaction_request()).await;
    for w in [deployed, counterfactual] {
        mined(token.transfer(w, U256::from(10 * PRICE)).into_transaction_request()).await;
    }
    assert!(has_code(&devnet, deployed).await && !has_code(&devnet, counterfactual).await);

    let factory_arg = factory.to_string();
    let allowing = Facilitator::start(&devnet, &["--eip6492-factory", &factory_arg]).await;
    let refusing = Facilitator::start(&devnet, &[]).await;
    let upstream = Upstream::start().await;
    let (pay_to, _) = devnet.account(8);
    let gateway = Gateway::start(&price_table(&devnet, &upstream.url, &allowing.url, pay_to, "")).await;
    let strict = Gateway::start(&price_table(&devnet, &upstream.url, &refusing.url, pay_to, "")).await;

    // Deployed: the wallet's ERC-1271 answer decides, through the facilitator even on a `verify: local`
    // route (nothing local can judge such a signature).
    let verifies_before = allowing.counter("facilitator_verify_requests_total").await;
    let (wallet_before, payee_before) = (devnet.balance(deployed).await, devnet.balance(pay_to).await);
    let out = pay_as_wallet(&format!("{}/local/wallet", gateway.url), &owner_key, deployed, None);
    assert_eq!(out["status"], 200, "{out}");
    let tx = out["payment_response"]["transaction"].as_str().unwrap();
    assert_eq!(devnet.receipt(tx).await["status"], "0x1");
    assert_eq!(out["payment_response"]["payer"], deployed.to_string(), "{out}");
    assert_eq!(devnet.balance(deployed).await, wallet_before - U256::from(PRICE));
    assert_eq!(devnet.balance(pay_to).await, payee_before + U256::from(PRICE));
    assert_eq!(
        allowing.counter("facilitator_verify_requests_total").await,
        verifies_before + 1,
        "the facilitator judged the contract signature"
    );

    // The wallet does not accept another key's signature: refused, nothing moved.
    let (_, stranger_key) = devnet.account(4);
    let out = pay_as_wallet(&format!("{}/paid/stranger", gateway.url), &stranger_key, deployed, None);
    assert_eq!(out["status"], 402, "{out}");
    assert_eq!(out["payment_required"]["error"], "invalid_exact_evm_signature", "{out}");
    assert_eq!(devnet.balance(deployed).await, wallet_before - U256::from(PRICE));

    // Not deployed yet: EIP-6492. A facilitator that does not deploy from the factory refuses it, with
    // nothing deployed and nothing moved.
    let deploy_call: Bytes = IWalletFactory::createAccountCall {
        owner,
        salt: U256::from(2),
    }
    .abi_encode()
    .into();
    let pay_counterfactual =
        |url: String| pay_as_wallet(&url, &owner_key, counterfactual, Some((factory, &deploy_call)));
    let counterfactual_before = devnet.balance(counterfactual).await;
    let out = pay_counterfactual(format!("{}/paid/unknown-factory", strict.url));
    assert_eq!(out["status"], 402, "{out}");
    assert_eq!(out["payment_required"]["error"], "eip6492_factory_not_allowed", "{out}");
    assert!(!has_code(&devnet, counterfactual).await);
    assert_eq!(devnet.balance(counterfactual).await, counterfactual_before);

    // One that does: deploys the wallet, then settles with its signature.
    let payee_before = devnet.balance(pay_to).await;
    let out = pay_counterfactual(format!("{}/paid/counterfactual", gateway.url));
    assert_eq!(out["status"], 200, "{out}");
    let tx = out["payment_response"]["transaction"].as_str().unwrap();
    assert_eq!(devnet.receipt(tx).await["status"], "0x1");
    assert!(has_code(&devnet, counterfactual).await, "the wallet was deployed");
    assert_eq!(
        devnet.balance(counterfactual).await,
        counterfactual_before - U256::from(PRICE)
    );
    assert_eq!(devnet.balance(pay_to).await, payee_before + U256::from(PRICE));
}
