//! `x402-gateway channels`: the operator's view of `batch-settlement` channels (deposit, charged, claimed
//! and unclaimed amounts) through a running gateway's admin listener, whatever its store; `claim` and
//! `settle` run a round of the claimer now instead of at its next interval.

use serde_json::Value;

use super::payments::admin_answer;

/// Flags of `channels`.
#[derive(Debug, clap::Args)]
pub struct ChannelsArgs {
    /// The gateway's admin listener (`admin_listen`).
    #[arg(long, default_value = "http://127.0.0.1:9402")]
    pub admin: String,
    /// Print the JSON the gateway answered.
    #[arg(long)]
    pub json: bool,
    #[command(subcommand)]
    pub action: Option<ChannelAction>,
}

/// What to do; `list` when none is given.
#[derive(Debug, Clone, Copy, clap::Subcommand)]
pub enum ChannelAction {
    /// List the channels (the default).
    List,
    /// Claim every channel's unclaimed charges now (one transaction per network, token and receiver).
    Claim,
    /// Settle claimed funds to the receiver now.
    Settle,
}

/// Runs `channels`.
pub async fn run(args: ChannelsArgs) -> Result<(), String> {
    let admin = args.admin.trim_end_matches('/');
    let client = reqwest::Client::new();
    let body = match args.action.unwrap_or(ChannelAction::List) {
        ChannelAction::List => admin_answer(admin, client.get(format!("{admin}/channels")).send().await).await?,
        ChannelAction::Claim => {
            admin_answer(admin, client.post(format!("{admin}/channels/claim")).send().await).await?
        }
        ChannelAction::Settle => {
            admin_answer(admin, client.post(format!("{admin}/channels/settle")).send().await).await?
        }
    };
    if args.json {
        println!("{body}");
        return Ok(());
    }
    if let Some(channels) = body["channels"].as_array() {
        if channels.is_empty() {
            println!("no channel is open");
        }
        for c in channels {
            let t = |k: &str| c[k].as_str().unwrap_or("").to_owned();
            println!(
                "{} on {}\n    payer {} → receiver {}, token {}\n    balance {}, charged {}, claimed {}, unclaimed {}{}",
                t("channel"),
                t("network"),
                t("payer"),
                t("receiver"),
                t("token"),
                t("balance"),
                t("charged"),
                t("claimed"),
                t("unclaimed"),
                match c["withdraw_requested_at"].as_u64() {
                    Some(at) if at > 0 => format!(", withdrawal requested at {at}: claim before it completes"),
                    _ => String::new(),
                }
            );
        }
        return Ok(());
    }
    let txs: Vec<String> = body["transactions"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    if txs.is_empty() {
        println!("nothing to send");
    }
    for tx in txs {
        println!("sent {tx}");
    }
    Ok(())
}
