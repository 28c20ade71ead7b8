#!/usr/bin/env node
// Pay an x402-protected URL with the official, unmodified npm v2 client:
// @x402/fetch wrapFetchWithPayment + @x402/evm registerExactEvmScheme (+ @x402/core), viem signer.
// Packages come from tools/node_modules (scripts/setup); loaded through createRequire because
// they live outside this directory's module resolution path.
//
// Env: URL, PRIVATE_KEY (0x hex), optional METHOD (default GET), BODY.
// Prints ONE JSON line on stdout:
//   {"status", "body", "payment_response", "payment_response_header",
//    "payment_header", "payment_header_name", "payment_payload", "payment_required", ["error"]}
// Exit 0 if the final response was 2xx, else 1. Diagnostics go to stderr.
//
// Client configuration (no modification of the packages):
//  * registerExactEvmScheme(client, {signer}) with no `networks`: ExactEvmScheme for "eip155:*"
//    (any chain id) and the v1 scheme for every legacy network name.
//  * client.setSpendControls(false): 2.27 otherwise refuses non-default assets ("only default
//    assets or entries in spendControls.allowedAssets are allowed") and caps default assets at $1.
import { createRequire } from "node:module";

const require = createRequire(new URL("../../tools/package.json", import.meta.url));
const { wrapFetchWithPayment, decodePaymentResponseHeader, x402Client } = require("@x402/fetch");
const { registerExactEvmScheme } = require("@x402/evm/exact/client");
const { toClientEvmSigner } = require("@x402/evm");
const { decodePaymentRequiredHeader, decodePaymentSignatureHeader } = require("@x402/core/http");
const { privateKeyToAccount } = require("viem/accounts");

const log = (...a) => console.error("[pay_v2]", ...a);
const PAY_HEADERS = ["PAYMENT-SIGNATURE", "X-PAYMENT"];

function env(name, dflt) {
  const v = process.env[name];
  if (v === undefined || v === "") {
    if (dflt === undefined) throw new Error(`env ${name} is required`);
    return dflt;
  }
  return v;
}

async function main() {
  const out = {
    status: 0,
    body: "",
    payment_response: null,
    payment_response_header: null,
    payment_header: null,
    payment_header_name: null,
    payment_payload: null,
    payment_required: null,
  };
  let sent = null;
  try {
    const url = env("URL");
    const account = privateKeyToAccount(env("PRIVATE_KEY"));
    const method = env("METHOD", "GET").toUpperCase();
    const body = process.env.BODY;

    const client = new x402Client();
    registerExactEvmScheme(client, { signer: toClientEvmSigner(account) });
    client.setSpendControls(false);
    log(`payer ${account.address}; ${method} ${url}`);

    // Plain fetch that records the payment header the wrapper put on the wire.
    const recordingFetch = async (input, init) => {
      const req = new Request(input, init);
      for (const name of PAY_HEADERS) {
        const v = req.headers.get(name);
        if (v) {
          sent = [name, v];
          log(`sending ${name}: ${Buffer.from(v, "base64").toString("utf8")}`);
        }
      }
      const resp = await fetch(req);
      log(`${req.method} ${req.url} -> ${resp.status}`);
      return resp;
    };
    const payFetch = wrapFetchWithPayment(recordingFetch, client);

    const init = { method };
    if (body !== undefined) {
      init.body = body;
      init.headers = { "Content-Type": "application/json" };
    }
    const resp = await payFetch(url, init);
    out.status = resp.status;
    out.body = await resp.text();
    for (const name of ["PAYMENT-RESPONSE", "X-PAYMENT-RESPONSE"]) {
      const v = resp.headers.get(name);
      if (v) {
        out.payment_response_header = name;
        try {
          out.payment_response = decodePaymentResponseHeader(v);
        } catch (e) {
          log(`cannot decode ${name}: ${e}`);
          out.payment_response = v;
        }
        break;
      }
    }
    const pr = resp.headers.get("PAYMENT-REQUIRED");
    if (pr) {
      try {
        out.payment_required = decodePaymentRequiredHeader(pr);
      } catch (e) {
        out.payment_required = pr;
      }
    }
  } catch (e) {
    log(`error: ${e && e.stack ? e.stack : e}`);
    out.error = String(e && e.message ? e.message : e);
  }
  if (sent) {
    [out.payment_header_name, out.payment_header] = sent;
    try {
      out.payment_payload = decodePaymentSignatureHeader(sent[1]);
    } catch (e) {
      out.payment_payload = null;
    }
  }
  process.stdout.write(JSON.stringify(out) + "\n");
  return out.status >= 200 && out.status < 300 ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    log(`fatal: ${e}`);
    process.stdout.write(JSON.stringify({ status: 0, body: "", payment_response: null, payment_response_header: null, error: String(e) }) + "\n");
    process.exitCode = 1;
  },
);
