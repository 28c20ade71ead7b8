#!/usr/bin/env node
// Pay an x402-protected URL with the official, unmodified LEGACY v1 npm client x402-fetch@1.2.0
// (which uses x402@1.2.0): wrapFetchWithPayment(fetch, signer, maxValue) + createSigner(network, pk).
// Packages come from tools/node_modules (scripts/setup), loaded through createRequire.
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
import { createRequire } from "node:module";

const require = createRequire(new URL("../../tools/package.json", import.meta.url));
const { wrapFetchWithPayment, createSigner, decodeXPaymentResponse } = require("x402-fetch");

const log = (...a) => console.error("[pay_v1]", ...a);

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
  };
  let sent = null;
  try {
    const url = env("URL");
    const network = env("NETWORK");
    const maxValue = BigInt(env("MAX_VALUE", "100000"));
    const method = env("METHOD", "GET").toUpperCase();
    const body = process.env.BODY;

    const signer = await createSigner(network, env("PRIVATE_KEY"));
    log(`payer ${signer.account.address} on ${network} (chain ${signer.chain.id}); ${method} ${url}; maxValue ${maxValue}`);

    // Plain fetch that records the payment header the wrapper put on the wire.
    const recordingFetch = async (input, init) => {
      const req = new Request(input, init);
      const v = req.headers.get("X-PAYMENT");
      if (v) {
        sent = ["X-PAYMENT", v];
        log(`sending X-PAYMENT: ${Buffer.from(v, "base64").toString("utf8")}`);
      }
      const resp = await fetch(req);
      log(`${req.method} ${req.url} -> ${resp.status}`);
      return resp;
    };
    const payFetch = wrapFetchWithPayment(recordingFetch, signer, maxValue);

    const init = { method };
    if (body !== undefined) {
      init.body = body;
      init.headers = { "Content-Type": "application/json" };
    }
    const resp = await payFetch(url, init);
    out.status = resp.status;
    out.body = await resp.text();
    for (const name of ["X-PAYMENT-RESPONSE", "PAYMENT-RESPONSE"]) {
      const v = resp.headers.get(name);
      if (v) {
        out.payment_response_header = name;
        try {
          out.payment_response = decodeXPaymentResponse(v);
        } catch (e) {
          log(`cannot decode ${name}: ${e}`);
          out.payment_response = v;
        }
        break;
      }
    }
  } catch (e) {
    log(`error: ${e && e.stack ? e.stack : e}`);
    out.error = String(e && e.message ? e.message : e);
  }
  if (sent) {
    [out.payment_header_name, out.payment_header] = sent;
    try {
      out.payment_payload = JSON.parse(Buffer.from(sent[1], "base64").toString("utf8"));
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
