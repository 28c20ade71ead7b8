// @x402/express 2.27 peer for the load benchmark (benches/load): GET /paid/* behind paymentMiddleware with
// one `exact` price (the same network, asset, payTo, amount, maxTimeoutSeconds and EIP-712 name/version as
// the gateway's bench route), proxied to the nginx upstream through a keep-alive agent; GET /free/* proxied
// without the middleware. One Node.js process (as the package's examples run it). ETag and X-Powered-By are
// off (cheap, standard production tuning). Configured from the environment:
//   PORT, UPSTREAM (http://ip:port), FACILITATOR (http://ip:port), PAY_TO, ASSET, NETWORK (CAIP-2),
//   AMOUNT (atomic units), MAX_TIMEOUT_SECONDS, EIP712_NAME, EIP712_VERSION, DESCRIPTION, MIME_TYPE.
import http from "node:http";
import express from "express";
import { paymentMiddleware, x402ResourceServer } from "@x402/express";
import { ExactEvmScheme } from "@x402/evm/exact/server";
import { HTTPFacilitatorClient } from "@x402/core/server";

const env = (name) => {
  const v = process.env[name];
  if (v === undefined) throw new Error(`${name} must be set`);
  return v;
};

const upstream = new URL(env("UPSTREAM"));
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

function proxy(req, res) {
  const up = http.get(
    { host: upstream.hostname, port: upstream.port, path: req.originalUrl, agent, headers: { host: upstream.host } },
    (r) => {
      const chunks = [];
      r.on("data", (c) => chunks.push(c));
      r.on("end", () => {
        res.status(r.statusCode);
        if (r.headers["content-type"]) res.set("content-type", r.headers["content-type"]);
        res.send(Buffer.concat(chunks));
      });
    },
  );
  up.on("error", () => res.status(502).end());
}

const facilitator = new HTTPFacilitatorClient({ url: env("FACILITATOR") });
const network = env("NETWORK");
const server = new x402ResourceServer(facilitator).register(network, new ExactEvmScheme());

const app = express();
app.disable("etag");
app.disable("x-powered-by");
app.use(
  paymentMiddleware(
    {
      "GET /paid/*": {
        accepts: {
          scheme: "exact",
          network,
          payTo: env("PAY_TO"),
          price: {
            amount: env("AMOUNT"),
            asset: env("ASSET"),
            extra: { name: env("EIP712_NAME"), version: env("EIP712_VERSION") },
          },
          maxTimeoutSeconds: Number(env("MAX_TIMEOUT_SECONDS")),
        },
        description: env("DESCRIPTION"),
        mimeType: env("MIME_TYPE"),
      },
    },
    server,
  ),
);
app.get("/paid/*rest", proxy);
app.get("/free/*rest", proxy);

const listener = app.listen(Number(env("PORT")), "127.0.0.1");
listener.keepAliveTimeout = 65_000;
