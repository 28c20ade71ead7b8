// Shared plumbing for the Node x402 client wrappers (pay_v1.mjs, pay_v2.mjs). Each wrapper keeps
// only what is specific to its (official, unmodified) client library: how it builds the paying
// fetch, which payment headers it sends, and how it decodes them. Everything else lives here:
// env parsing, the recording fetch, request init (METHOD/BODY), the output object, response-header
// decoding, the one-line JSON on stdout and the exit code.
//
// Output (one JSON line on stdout):
//   {"status", "body", "payment_response", "payment_response_header",
//    "payment_header", "payment_header_name", "payment_payload", ["payment_required"], ["error"]}
// "payment_required" is present only when the wrapper passes decodePaymentRequired.
// Exit 0 if the final response was 2xx, else 1. Diagnostics go to stderr.
import { createRequire } from "node:module";

// Packages come from tools/node_modules (scripts/setup); loaded through createRequire because
// they live outside this directory's module resolution path.
export const requireTool = createRequire(new URL("../../tools/package.json", import.meta.url));

export function env(name, dflt) {
  const v = process.env[name];
  if (v === undefined || v === "") {
    if (dflt === undefined) throw new Error(`env ${name} is required`);
    return dflt;
  }
  return v;
}

const b64json = (v) => JSON.parse(Buffer.from(v, "base64").toString("utf8"));

// Run one paid request and print the result. Options:
//   tag                    log prefix, e.g. "pay_v1"
//   payHeaders             request headers the client may put the payment in (recorded; last one seen wins)
//   responseHeaders        settlement-receipt headers to look for, in order (first present wins)
//   decodeResponse(v)      decode a receipt header value
//   decodePayload(v)       decode the recorded payment header (default: base64 JSON)
//   decodePaymentRequired  if given, adds "payment_required" = decoded PAYMENT-REQUIRED of the final response
//   makePayFetch({url, method, log, fetch})  builds the client's paying fetch around the recording
//                          `fetch`; reads any client-specific env itself. May be async.
export function runPayClient(opts) {
  const { tag, payHeaders, responseHeaders, decodeResponse, decodePayload = b64json, decodePaymentRequired, makePayFetch } = opts;
  const log = (...a) => console.error(`[${tag}]`, ...a);

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
    if (decodePaymentRequired) out.payment_required = null;
    let sent = null;
    try {
      const url = env("URL");
      const method = env("METHOD", "GET").toUpperCase();
      const body = process.env.BODY;

      // Plain fetch that records the payment header the wrapper put on the wire.
      const recordingFetch = async (input, init) => {
        const req = new Request(input, init);
        for (const name of payHeaders) {
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
      const payFetch = await makePayFetch({ url, method, log, fetch: recordingFetch });

      // HEADERS: extra request headers as a JSON object (e.g. what the echo upstream should charge).
      const init = { method, headers: JSON.parse(process.env.HEADERS || "{}") };
      if (body !== undefined) {
        init.body = body;
        init.headers["Content-Type"] = "application/json";
      }
      const resp = await payFetch(url, init);
      out.status = resp.status;
      out.body = await resp.text();
      // The upstream's charge report must never reach the client: recorded so tests can see it did not.
      out.settlement_overrides = resp.headers.get("Settlement-Overrides");
      for (const name of responseHeaders) {
        const v = resp.headers.get(name);
        if (v) {
          out.payment_response_header = name;
          try {
            out.payment_response = decodeResponse(v);
          } catch (e) {
            log(`cannot decode ${name}: ${e}`);
            out.payment_response = v;
          }
          break;
        }
      }
      if (decodePaymentRequired) {
        const pr = resp.headers.get("PAYMENT-REQUIRED");
        if (pr) {
          try {
            out.payment_required = decodePaymentRequired(pr);
          } catch (e) {
            out.payment_required = pr;
          }
        }
      }
    } catch (e) {
      log(`error: ${e && e.stack ? e.stack : e}`);
      out.error = String(e && e.message ? e.message : e);
    }
    if (sent) {
      [out.payment_header_name, out.payment_header] = sent;
      try {
        out.payment_payload = decodePayload(sent[1]);
      } catch (e) {
        out.payment_payload = null;
      }
    }
    process.stdout.write(JSON.stringify(out) + "\n");
    return out.status >= 200 && out.status < 300 ? 0 : 1;
  }

  return main().then(
    (code) => {
      process.exitCode = code;
    },
    (e) => {
      log(`fatal: ${e}`);
      process.stdout.write(JSON.stringify({ status: 0, body: "", payment_response: null, payment_response_header: null, error: String(e) }) + "\n");
      process.exitCode = 1;
    },
  );
}
