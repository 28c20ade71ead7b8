//! `x402-gateway payments`: the operator's view of payments whose settlement outcome is unknown (sent to the
//! facilitator, no answer recorded), through a running gateway's admin listener, whatever its store. After
//! checking the chain, an operator resolves one: settled in a transaction (the payment is then refused as
//! used), or failed (the payer may use the authorization again). The gateway resolves them itself from the
//! chain where the config's `rpc:` names the network; this is for the rest.

use serde_json::{json, Value};

/// Flags of `payments`.
#[derive(Debug, clap::Args)]
pub struct PaymentsArgs {
    /// The gateway's admin listener (`admin_listen`).
    #[arg(long, default_value = "http://127.0.0.1:9402")]
    pub admin: String,
    #[command(subcommand)]
    pub action: Option<Action>,
}

/// What to do; `list` when none is given.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// List payments in doubt (the default).
    List {
        /// Print the JSON the gateway answered.
        #[arg(long)]
        json: bool,
    },
    /// Record what became of one payment (KEY from `list`).
    Resolve {
        key: String,
        /// It was paid in this transaction (check its receipt first).
        #[arg(long, conflicts_with = "failed", required_unless_present = "failed")]
        settled: Option<String>,
        /// It was not paid and cannot be any more; why.
        #[arg(long)]
        failed: Option<String>,
    },
}

/// The admin listener's JSON answer, or what went wrong in words an operator can act on.
pub async fn admin_answer(admin: &str, r: Result<reqwest::Response, reqwest::Error>) -> Result<Value, String> {
    let r = r.map_err(|e| format!("cannot reach the admin listener {admin}: {}", e.without_url()))?;
    let status = r.status();
    let body: Value = r.json().await.map_err(|e| format!("unreadable answer: {e}"))?;
    if status.is_success() {
        Ok(body)
    } else {
        let why = body["error"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| body["errors"].as_array().map(|e| format!("{e:?}")))
            .unwrap_or_else(|| "(no reason)".to_owned());
        Err(format!("{status}: {why}"))
    }
}

/// Runs `payments`.
pub async fn run(args: PaymentsArgs) -> Result<(), String> {
    let admin = args.admin.trim_end_matches('/');
    let client = reqwest::Client::new();
    let answer = |r| admin_answer(admin, r);
    match args.action.unwrap_or(Action::List { json: false }) {
        Action::List { json } => {
            let body = answer(client.get(format!("{admin}/payments")).send().await).await?;
            if json {
                println!("{body}");
                return Ok(());
            }
            let payments = body["payments"].as_array().cloned().unwrap_or_default();
            if payments.is_empty() {
                println!("no payment is in doubt");
            }
            for p in &payments {
                let text = |k: &str| p[k].as_str().unwrap_or("").to_owned();
                let tx = text("transaction");
                println!(
                    "{}\n    {} payer {} on {}, transaction {}{}",
                    text("key"),
                    text("state"),
                    text("payer"),
                    text("network"),
                    if tx.is_empty() { "unknown" } else { &tx },
                    p["charge"]
                        .as_str()
                        .map(|c| format!(", charge {c}"))
                        .unwrap_or_default(),
                );
            }
            Ok(())
        }
        Action::Resolve { key, settled, failed } => {
            let body = json!({ "key": key, "settled": settled, "failed": failed });
            let url = format!("{admin}/payments/resolve");
            answer(client.post(url).json(&body).send().await).await?;
            println!("resolved {key}");
            Ok(())
        }
    }
}
