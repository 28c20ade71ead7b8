//! `x402-gateway devnet`: a local chain anyone can start. Runs anvil, deploys the project's EIP-3009 test
//! token and a plain 18-decimal ERC-20 (no EIP-3009), places Permit2 and the x402 Permit2 proxies at
//! their canonical addresses (our own compatible contracts: `contracts/README-permit2.md`), and the
//! batch-settlement contract with its two deposit collectors at theirs, funds anvil's
//! dev accounts 1–9 with both tokens, approves Permit2 for both from accounts 1–8 (9 is kept unapproved),
//! and describes all of that in a state file.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::Provider;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolValue;
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};

use crate::core::signal::shutdown_signal;
use crate::protocol::batch;
use crate::protocol::network::Network;
use crate::protocol::permit2::{EXACT_PROXY, PERMIT2, UPTO_PROXY};
use crate::tools::chain::{Chain, ChainError, IEip3009Token};

/// Flags of `devnet`.
#[derive(Debug, clap::Args)]
pub struct DevnetArgs {
    /// RPC port for anvil.
    #[arg(long, default_value_t = 8545)]
    pub port: u16,
    /// Chain id (use 84532 to let legacy v1 clients call it `base-sepolia`).
    #[arg(long, default_value_t = 31_337)]
    pub chain_id: u64,
    /// Write a JSON description (RPC URL, token, funded keys) here once everything is ready.
    #[arg(long)]
    pub state_file: Option<PathBuf>,
    /// The anvil binary (default: tools/node_modules/.bin/anvil, then PATH).
    #[arg(long)]
    pub anvil: Option<PathBuf>,
}

/// The compiled test token (`contracts/X402TestToken.sol`, built by `scripts/build-token`).
const TOKEN_ARTIFACT: &str = include_str!("../../contracts/X402TestToken.json");
/// The plain ERC-20 (`contracts/X402PlainToken.sol`).
const PLAIN_TOKEN_ARTIFACT: &str = include_str!("../../contracts/X402PlainToken.json");
/// The ERC-1271 test wallet's CREATE2 factory (`contracts/X402TestWallet.sol`).
const WALLET_FACTORY_ARTIFACT: &str = include_str!("../../contracts/X402TestWalletFactory.json");
/// Runtime code placed at fixed addresses with `anvil_setCode` (none of it depends on its constructor).
const PLACED: [(Address, &str); 6] = [
    (PERMIT2, include_str!("../../contracts/X402Permit2.json")),
    (EXACT_PROXY, include_str!("../../contracts/X402ExactPermit2Proxy.json")),
    (UPTO_PROXY, include_str!("../../contracts/X402UptoPermit2Proxy.json")),
    (
        batch::SETTLEMENT,
        include_str!("../../contracts/X402BatchSettlement.json"),
    ),
    (
        batch::ERC3009_COLLECTOR,
        include_str!("../../contracts/X402ERC3009DepositCollector.json"),
    ),
    (
        batch::PERMIT2_COLLECTOR,
        include_str!("../../contracts/X402Permit2DepositCollector.json"),
    ),
];
/// The plain token's name, symbol and decimals (18, so amounts are converted unlike USDC's 6).
const PLAIN_TOKEN: (&str, &str, u8) = ("Plain Test Token", "PLAIN", 18);
/// The dev account that never approves Permit2: paying with it through Permit2 must be refused (412).
pub const UNAPPROVED_ACCOUNT: usize = 9;

/// Anvil's well-known dev keys (mnemonic "test test … junk"), accounts 0–9. Public test keys: never
/// fund them on a real chain.
pub const DEV_KEYS: [&str; 10] = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
];

/// Whole tokens minted to each funded dev account.
const FUNDED_TOKENS: u64 = 1_000_000;
/// How long anvil gets to open its RPC port.
const ANVIL_START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a devnet set-up transaction may take to mine.
const SETUP_TX_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the devnet did not start.
#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    #[error("anvil not found: run scripts/setup (installs it into tools/), put `anvil` on PATH, or pass --anvil PATH")]
    AnvilNotFound,
    #[error("could not start anvil at {path}: {source}")]
    Spawn { path: PathBuf, source: std::io::Error },
    #[error("anvil exited before its RPC answered (is port {0} already in use?)")]
    AnvilExited(u16),
    #[error("anvil's RPC did not answer within {0:?}")]
    AnvilTimeout(Duration),
    #[error("an embedded contract artifact is unreadable: {0}")]
    Artifact(String),
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("could not write the state file {path}: {source}")]
    StateFile { path: PathBuf, source: std::io::Error },
}

/// A dev account in the state file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Account {
    pub address: String,
    pub private_key: String,
}

/// The `--state-file` JSON: exactly the keys the issue fixes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DevnetState {
    pub rpc_url: String,
    pub chain_id: u64,
    pub network: String,
    pub v1_network: Option<String>,
    pub asset: String,
    pub asset_name: String,
    pub asset_version: String,
    pub asset_decimals: u8,
    /// The plain ERC-20 (no EIP-3009): payable only through Permit2.
    pub plain_asset: String,
    pub plain_asset_name: String,
    pub plain_asset_symbol: String,
    pub plain_asset_decimals: u8,
    pub permit2: String,
    pub exact_permit2_proxy: String,
    pub upto_permit2_proxy: String,
    /// The batch-settlement contract (its deposit collectors sit at their canonical addresses too).
    pub batch_settlement: String,
    /// The factory of `X402TestWallet`s, ERC-1271 contract wallets of one owner key: `createAccount(owner,
    /// salt)` deploys one, `getAddress(owner, salt)` says where before it exists (EIP-6492 payers).
    pub wallet_factory: String,
    /// The dev account (index into `accounts` + 1) that has not approved Permit2.
    pub unapproved_account: String,
    pub accounts: Vec<Account>,
    pub facilitator_private_key: String,
}

/// How to start a devnet.
#[derive(Debug, Clone)]
pub struct DevnetOptions {
    pub port: u16,
    pub chain_id: u64,
    pub anvil: Option<PathBuf>,
    pub token_name: String,
    pub token_version: String,
    pub token_symbol: String,
    pub token_decimals: u8,
}

impl Default for DevnetOptions {
    fn default() -> Self {
        DevnetOptions {
            port: 8545,
            chain_id: 31_337,
            anvil: None,
            token_name: "USD Coin".into(),
            token_version: "2".into(),
            token_symbol: "USDC".into(),
            token_decimals: 6,
        }
    }
}

/// A running devnet; anvil stops when this is dropped.
pub struct Devnet {
    /// What runs where.
    pub state: DevnetState,
    anvil: Child,
}

impl Devnet {
    /// Starts anvil, deploys and funds the token.
    pub async fn start(opts: &DevnetOptions) -> Result<Devnet, DevnetError> {
        let path = find_anvil(opts.anvil.as_deref()).ok_or(DevnetError::AnvilNotFound)?;
        let mut anvil = Command::new(&path)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &opts.port.to_string(),
                "--chain-id",
                &opts.chain_id.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| DevnetError::Spawn {
                path: path.clone(),
                source,
            })?;
        let rpc_url = format!("http://127.0.0.1:{}", opts.port);
        let url: url::Url = rpc_url
            .parse()
            .map_err(|e: url::ParseError| DevnetError::Artifact(e.to_string()))?;
        let deployer = dev_signer(0)?;
        let chain = wait_for_rpc(&url, deployer.clone(), &mut anvil, opts.port).await?;
        // Make sure the settling key has gas whatever mnemonic anvil used.
        let _: serde_json::Value = chain
            .provider()
            .raw_request(
                "anvil_setBalance".into(),
                (deployer.address(), U256::from(10u128.pow(22))),
            )
            .await
            .map_err(|source| ChainError::Rpc {
                url: rpc_url.clone(),
                source,
            })?;
        let asset = deploy_token(&chain, opts).await?;
        let (plain_name, plain_symbol, plain_decimals) = PLAIN_TOKEN;
        let plain_args = (
            plain_name.to_owned(),
            plain_symbol.to_owned(),
            U256::from(plain_decimals),
        )
            .abi_encode_params();
        let plain = deploy(&chain, PLAIN_TOKEN_ARTIFACT, &plain_args).await?;
        let wallet_factory = deploy(&chain, WALLET_FACTORY_ARTIFACT, &[]).await?;
        for (at, artifact) in PLACED {
            let code = artifact_code(artifact, "deployedBytecode")?;
            let _: serde_json::Value = chain
                .provider()
                .raw_request("anvil_setCode".into(), (at, code))
                .await
                .map_err(|source| ChainError::Rpc {
                    url: rpc_url.clone(),
                    source,
                })?;
        }
        let mut accounts = Vec::new();
        let mut pending = Vec::new();
        for (i, key) in DEV_KEYS.iter().enumerate().skip(1) {
            let signer = dev_signer(i)?;
            for (token, decimals) in [(asset, opts.token_decimals), (plain, plain_decimals)] {
                let amount = U256::from(FUNDED_TOKENS) * U256::from(10u64).pow(U256::from(decimals));
                let tx = IEip3009Token::new(token, chain.provider())
                    .mint(signer.address(), amount)
                    .into_transaction_request();
                pending.push(chain.send(tx).await?);
            }
            accounts.push(Account {
                address: signer.address().to_string(),
                private_key: (*key).to_owned(),
            });
        }
        for hash in pending.drain(..) {
            chain.wait(hash, SETUP_TX_TIMEOUT).await?;
        }
        // Each payer approves Permit2 once, as a real one must before its first Permit2 payment.
        for i in (1..DEV_KEYS.len()).filter(|&i| i != UNAPPROVED_ACCOUNT) {
            let own = Chain::connect(&url, Some(dev_signer(i)?)).await?;
            for token in [asset, plain] {
                let tx = IEip3009Token::new(token, own.provider())
                    .approve(PERMIT2, U256::MAX)
                    .into_transaction_request();
                let hash = own.send(tx).await?;
                own.wait(hash, SETUP_TX_TIMEOUT).await?;
            }
        }
        let network = Network::new(opts.chain_id);
        let state = DevnetState {
            rpc_url,
            chain_id: opts.chain_id,
            network: network.caip2(),
            v1_network: network.v1_name().map(str::to_owned),
            asset: asset.to_string(),
            asset_name: opts.token_name.clone(),
            asset_version: opts.token_version.clone(),
            asset_decimals: opts.token_decimals,
            plain_asset: plain.to_string(),
            plain_asset_name: plain_name.to_owned(),
            plain_asset_symbol: plain_symbol.to_owned(),
            plain_asset_decimals: plain_decimals,
            permit2: PERMIT2.to_string(),
            exact_permit2_proxy: EXACT_PROXY.to_string(),
            upto_permit2_proxy: UPTO_PROXY.to_string(),
            batch_settlement: batch::SETTLEMENT.to_string(),
            wallet_factory: wallet_factory.to_string(),
            unapproved_account: dev_signer(UNAPPROVED_ACCOUNT)?.address().to_string(),
            accounts,
            facilitator_private_key: DEV_KEYS[0].to_owned(),
        };
        Ok(Devnet { state, anvil })
    }

    /// Stops anvil and waits for it to exit.
    pub async fn stop(mut self) {
        let _ = self.anvil.kill().await;
    }
}

/// The signer for anvil dev account `i`.
pub fn dev_signer(i: usize) -> Result<PrivateKeySigner, DevnetError> {
    DEV_KEYS
        .get(i)
        .and_then(|k| k.parse().ok())
        .ok_or_else(|| DevnetError::Artifact(format!("no dev key {i}")))
}

/// Writes `value` as pretty JSON to `path` atomically (temp file, then rename), so readers never see half
/// a file.
pub fn write_json_atomically<T: Serialize>(path: &Path, value: &T) -> Result<(), DevnetError> {
    let err = |source| DevnetError::StateFile {
        path: path.to_owned(),
        source,
    };
    let json = serde_json::to_vec_pretty(value).map_err(|e| err(std::io::Error::other(e)))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, json).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// `--anvil`, then `tools/node_modules/.bin/anvil` under the current directory or the binary's repo, then PATH.
fn find_anvil(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_owned());
    }
    let relative = Path::new("tools/node_modules/.bin/anvil");
    let mut roots: Vec<PathBuf> = std::env::current_dir().into_iter().collect();
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().map(Path::to_owned));
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("anvil"));
    roots
        .iter()
        .map(|r| r.join(relative))
        .chain(on_path)
        .find(|p| p.is_file())
}

async fn wait_for_rpc(
    url: &url::Url,
    signer: PrivateKeySigner,
    anvil: &mut Child,
    port: u16,
) -> Result<Chain, DevnetError> {
    let deadline = tokio::time::Instant::now() + ANVIL_START_TIMEOUT;
    loop {
        if let Ok(Some(_)) = anvil.try_wait() {
            return Err(DevnetError::AnvilExited(port));
        }
        if let Ok(chain) = Chain::connect(url, Some(signer.clone())).await {
            return Ok(chain);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(DevnetError::AnvilTimeout(ANVIL_START_TIMEOUT));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn deploy_token(chain: &Chain, opts: &DevnetOptions) -> Result<Address, DevnetError> {
    let args = (
        opts.token_name.clone(),
        opts.token_version.clone(),
        opts.token_symbol.clone(),
        U256::from(opts.token_decimals),
    )
        .abi_encode_params();
    deploy(chain, TOKEN_ARTIFACT, &args).await
}

/// Deploys a compiled contract with its ABI-encoded constructor `args`.
async fn deploy(chain: &Chain, artifact: &str, args: &[u8]) -> Result<Address, DevnetError> {
    let mut init = artifact_code(artifact, "bytecode")?.to_vec();
    init.extend_from_slice(args);
    Ok(chain.deploy(init.into(), SETUP_TX_TIMEOUT).await?)
}

/// The hex code under `field` of an embedded artifact (`scripts/build-token` writes them).
fn artifact_code(artifact: &str, field: &str) -> Result<Bytes, DevnetError> {
    let json: serde_json::Value = serde_json::from_str(artifact).map_err(|e| DevnetError::Artifact(e.to_string()))?;
    json.get(field)
        .and_then(|b| b.as_str())
        .and_then(|b| b.parse().ok())
        .ok_or_else(|| DevnetError::Artifact(format!("no hex `{field}` field")))
}

/// `x402-gateway devnet`: start, describe, wait for a signal, stop.
pub async fn run(args: DevnetArgs) -> Result<(), String> {
    let opts = DevnetOptions {
        port: args.port,
        chain_id: args.chain_id,
        anvil: args.anvil,
        ..DevnetOptions::default()
    };
    let devnet = Devnet::start(&opts).await.map_err(|e| e.to_string())?;
    let s = &devnet.state;
    if let Some(path) = &args.state_file {
        write_json_atomically(path, s).map_err(|e| e.to_string())?;
    }
    println!("devnet ready");
    println!(
        "  rpc:          {} (chain id {}, {}{})",
        s.rpc_url,
        s.chain_id,
        s.network,
        s.v1_network
            .as_deref()
            .map(|n| format!(", v1 name {n}"))
            .unwrap_or_default()
    );
    println!(
        "  token:        {} {:?} v{} ({} decimals)",
        s.asset, s.asset_name, s.asset_version, s.asset_decimals
    );
    println!(
        "  funded:       anvil dev accounts 1-9 with {FUNDED_TOKENS} tokens each, e.g. {}",
        s.accounts.first().map(|a| a.address.as_str()).unwrap_or("-")
    );
    println!("  facilitator:  anvil dev account 0 (gas only), key in the state file");
    if let Some(path) = &args.state_file {
        println!("  state file:   {}", path.display());
    }
    println!("Ctrl-C stops it.");
    shutdown_signal().await;
    devnet.stop().await;
    Ok(())
}
