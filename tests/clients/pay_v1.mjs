#!/usr/bin/env node
// Pay an x402-protected URL with the official, unmodified LEGACY v1 npm client x402-fetch@1.2.0
// (which uses x402@1.2.0): wrapFetchWithPayment(fetch, signer, maxValue) + createSigner(network, pk).
// Shared plumbing (env, recording fetch, output, exit code) is in common.mjs.
//
// Env: URL, PRIVATE_KEY (0x hex), NETWORK (v1 name, e.g. base-sepolia; the legacy client only knows
// its enum: base, base-sepolia, avalanche(-fuji), polygon(-amoy), sei(-testnet), iotex, abstract(-testnet),
// peaq, story, educhain, skale-base-sepolia), optional MAX_VALUE (atomic units, default 100000 =
// the package default 0.10 USDC), METHOD (default GET), BODY.
// Prints ONE JSON line on stdout:
//   {"status", "body", "payment_response", "payment_response_header",
//    "payment_header", "payment_header_name", "payment_payload", ["error"]}
// Exit 0 if the final response was 2xx, else 1. Diagnostics go to stderr.
//
// Signing is local (viem local account); the wallet client's RPC transport is never used.
// The legacy client has no asset allowlist; its only cap is maxValue (MAX_VALUE).
import { requireTool, env, runPayClient } from "./common.mjs";

const { wrapFetchWithPayment, createSigner, decodeXPaymentResponse } = requireTool("x402-fetch");

runPayClient({
  tag: "pay_v1",
  payHeaders: ["X-PAYMENT"],
  responseHeaders: ["X-PAYMENT-RESPONSE", "PAYMENT-RESPONSE"],
  decodeResponse: decodeXPaymentResponse,
  // payment_payload: the X-PAYMENT header is base64 JSON (common.mjs default decoder).
  async makePayFetch({ url, method, log, fetch }) {
    const network = env("NETWORK");
    const maxValue = BigInt(env("MAX_VALUE", "100000"));
    const signer = await createSigner(network, env("PRIVATE_KEY"));
    log(`payer ${signer.account.address} on ${network} (chain ${signer.chain.id}); ${method} ${url}; maxValue ${maxValue}`);
    return wrapFetchWithPayment(fetch, signer, maxValue);
  },
});
