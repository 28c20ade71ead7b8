#!/usr/bin/env node
// Pay an x402-protected URL with the official, unmodified npm v2 client:
// @x402/fetch wrapFetchWithPayment + @x402/evm registerExactEvmScheme (+ @x402/core), viem signer.
// Shared plumbing (env, recording fetch, output, exit code) is in common.mjs.
//
// Env: URL, PRIVATE_KEY (0x hex), optional METHOD (default GET), BODY, HEADERS (extra request headers,
// a JSON object). A contract-wallet payer: WALLET (its address; PRIVATE_KEY is then its owner's key),
// optionally WALLET_FACTORY and WALLET_FACTORY_DATA (the wallet is not deployed yet: the signature is
// EIP-6492-wrapped with that factory call, as viem's smart accounts do).
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
const { encodeAbiParameters, serializeErc6492Signature } = requireTool("viem");

// The signer a contract wallet gives the official client (the ClientEvmSigner interface: `address` and
// `signTypedData`): the payer is the wallet; its signature is the owner's, wrapped the way the devnet's
// X402TestWallet checks it (abi.encode(uint256 ownerIndex, bytes ownerSignature), as Coinbase Smart
// Wallet's SignatureWrapper), and EIP-6492-wrapped while the wallet is not deployed.
function walletSigner(owner) {
  const wallet = process.env.WALLET;
  if (!wallet) return owner;
  const factory = process.env.WALLET_FACTORY;
  return {
    address: wallet,
    async signTypedData(typed) {
      const ownerSignature = await owner.signTypedData(typed);
      const signature = encodeAbiParameters([{ type: "uint256" }, { type: "bytes" }], [0n, ownerSignature]);
      if (!factory) return signature;
      return serializeErc6492Signature({ address: factory, data: process.env.WALLET_FACTORY_DATA, signature });
    },
  };
}

runPayClient({
  tag: "pay_v2",
  payHeaders: ["PAYMENT-SIGNATURE", "X-PAYMENT"],
  responseHeaders: ["PAYMENT-RESPONSE", "X-PAYMENT-RESPONSE"],
  decodeResponse: decodePaymentResponseHeader,
  decodePayload: decodePaymentSignatureHeader,
  decodePaymentRequired: decodePaymentRequiredHeader,
  makePayFetch({ url, method, log, fetch }) {
    const account = walletSigner(privateKeyToAccount(env("PRIVATE_KEY")));
    const client = new x402Client();
    const signer = toClientEvmSigner(account);
    registerExactEvmScheme(client, { signer });
    client.register("eip155:*", new UptoEvmScheme(signer));
    client.setSpendControls(false);
    log(`payer ${account.address}; ${method} ${url}`);
    return wrapFetchWithPayment(fetch, client);
  },
});
