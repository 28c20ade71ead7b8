#!/usr/bin/env node
// Pay a `batch-settlement` route with the official, unmodified npm v2 client: @x402/fetch
// wrapFetchWithPayment + @x402/evm's BatchSettlementEvmScheme (deposit once, then a voucher per call,
// its hooks run on each answer), then, optionally, its refund API.
//
// Env: URL (a GET route), PRIVATE_KEY, RPC_URL, CALLS (default 3), REFUND ("1": refund the rest after).
// Prints ONE JSON line: {"statuses", "receipts" (decoded PAYMENT-RESPONSE or null), "refund"}.
//
// Client configuration (no modification of the packages): setSpendControls(false), because the devnet
// token is not a default asset; toClientEvmSigner(account, publicClient) so the scheme can read the
// channel on chain, as its corrective-402 recovery needs.
import { requireTool, env } from "./common.mjs";

const { wrapFetchWithPayment, decodePaymentResponseHeader, x402Client } = requireTool("@x402/fetch");
const { BatchSettlementEvmScheme } = requireTool("@x402/evm/batch-settlement/client");
const { toClientEvmSigner } = requireTool("@x402/evm");
const { privateKeyToAccount } = requireTool("viem/accounts");
const { createPublicClient, http } = requireTool("viem");

const url = env("URL");
const account = privateKeyToAccount(env("PRIVATE_KEY"));
const publicClient = createPublicClient({ transport: http(env("RPC_URL")) });
const scheme = new BatchSettlementEvmScheme(toClientEvmSigner(account, publicClient));
const client = new x402Client();
client.register("eip155:*", scheme);
client.setSpendControls(false);
const pay = wrapFetchWithPayment(fetch, client);

const out = { statuses: [], receipts: [] };
try {
  for (let i = 0; i < Number(env("CALLS", "3")); i++) {
    const r = await pay(url);
    out.statuses.push(r.status);
    const h = r.headers.get("PAYMENT-RESPONSE");
    out.receipts.push(h ? decodePaymentResponseHeader(h) : null);
    await r.text();
  }
  if (env("REFUND", "") === "1") {
    try {
      out.refund = await scheme.refund(url);
    } catch (e) {
      out.refund = { error: String(e?.message ?? e) };
    }
  }
} catch (e) {
  out.error = String(e?.stack ?? e);
}
console.log(JSON.stringify(out, (_, v) => (typeof v === "bigint" ? v.toString() : v)));
