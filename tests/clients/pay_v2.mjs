#!/usr/bin/env node
// Pay an x402-protected URL with the official, unmodified npm v2 client:
// @x402/fetch wrapFetchWithPayment + @x402/evm registerExactEvmScheme (+ @x402/core), viem signer.
// Shared plumbing (env, recording fetch, output, exit code) is in common.mjs.
//
// Env: URL, PRIVATE_KEY (0x hex), optional METHOD (default GET), BODY, HEADERS (extra request headers,
// a JSON object).
// Prints ONE JSON line on stdout:
//   {"status", "body", "payment_response", "payment_response_header",
//    "payment_header", "payment_header_name", "payment_payload", "payment_required", ["error"]}
// Exit 0 if the final response was 2xx, else 1. Diagnostics go to stderr.
//
// Client configuration (no modification of the packages):
//  * registerExactEvmScheme(client, {signer}) with no `networks`: ExactEvmScheme for "eip155:*"
//    (any chain id) and the v1 scheme for every legacy network name.
//  * client.register("eip155:*", new UptoEvmScheme(signer)): the metered scheme, which no helper
//    registers; the client picks whichever scheme the 402 offers.
//  * client.setSpendControls(false): 2.27 otherwise refuses non-default assets ("only default
//    assets or entries in spendControls.allowedAssets are allowed") and caps default assets at $1.
import { requireTool, env, runPayClient } from "./common.mjs";

const { wrapFetchWithPayment, decodePaymentResponseHeader, x402Client } = requireTool("@x402/fetch");
const { registerExactEvmScheme } = requireTool("@x402/evm/exact/client");
const { UptoEvmScheme } = requireTool("@x402/evm/upto/client");
const { toClientEvmSigner } = requireTool("@x402/evm");
const { decodePaymentRequiredHeader, decodePaymentSignatureHeader } = requireTool("@x402/core/http");
const { privateKeyToAccount } = requireTool("viem/accounts");

runPayClient({
  tag: "pay_v2",
  payHeaders: ["PAYMENT-SIGNATURE", "X-PAYMENT"],
  responseHeaders: ["PAYMENT-RESPONSE", "X-PAYMENT-RESPONSE"],
  decodeResponse: decodePaymentResponseHeader,
  decodePayload: decodePaymentSignatureHeader,
  decodePaymentRequired: decodePaymentRequiredHeader,
  makePayFetch({ url, method, log, fetch }) {
    const account = privateKeyToAccount(env("PRIVATE_KEY"));
    const client = new x402Client();
    const signer = toClientEvmSigner(account);
    registerExactEvmScheme(client, { signer });
    client.register("eip155:*", new UptoEvmScheme(signer));
    client.setSpendControls(false);
    log(`payer ${account.address}; ${method} ${url}`);
    return wrapFetchWithPayment(fetch, client);
  },
});
