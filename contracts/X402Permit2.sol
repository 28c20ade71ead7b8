// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

/// @title X402Permit2
/// @notice A small, independently written stand-in for the signature-transfer
///         half of Uniswap's Permit2, for local devnets only. It speaks the
///         same ABI (function signatures, selectors, custom errors, event),
///         the same EIP-712 domain and the same typehashes as the contract
///         deployed at 0x000000000022D473030F116dDEE9F6B43aC78BA3, so that the
///         official x402 clients, the x402 Permit2 proxies and a facilitator's
///         simulation cannot tell the difference for the calls they make.
///         It is NOT Permit2: the allowance-based half (approve/permit/
///         transferFrom/lockdown) and the batch variants are left out.
///         Never deploy it anywhere that value is at stake.
/// @dev The devnet places the runtime code at the canonical address with
///      anvil_setCode, so nothing here may depend on the constructor having
///      run at that address: there are no immutables and no constructor, and
///      the domain separator is derived from address(this) and block.chainid
///      on every call. Self-contained (no imports) so that solc-js alone can
///      build it; see scripts/build-token.
contract X402Permit2 {
    // ------------------------------------------------------------------
    // Types (tuple layouts must match Permit2's ISignatureTransfer exactly,
    // since they determine the function selectors)
    // ------------------------------------------------------------------

    /// @notice What the owner lets the spender take: a token and a ceiling.
    struct TokenPermissions {
        address token;
        uint256 amount;
    }

    /// @notice The signed permission: one token, a one-shot nonce and a deadline.
    struct PermitTransferFrom {
        TokenPermissions permitted;
        uint256 nonce;
        uint256 deadline;
    }

    /// @notice Chosen by the spender at call time: the recipient and how much
    ///         of the permitted amount to move.
    struct SignatureTransferDetails {
        address to;
        uint256 requestedAmount;
    }

    // ------------------------------------------------------------------
    // Errors and events (names and arguments as in Permit2, so that revert
    // data decodes identically against the canonical ABI)
    // ------------------------------------------------------------------

    /// @notice block.timestamp is past the permit's deadline.
    error SignatureExpired(uint256 signatureDeadline);
    /// @notice The nonce's bit in the owner's bitmap is already set.
    error InvalidNonce();
    /// @notice requestedAmount is above the permitted amount (`maxAmount`).
    error InvalidAmount(uint256 maxAmount);
    /// @notice An EOA signature that is neither 65 nor 64 bytes long.
    error InvalidSignatureLength();
    /// @notice ecrecover produced no address.
    error InvalidSignature();
    /// @notice ecrecover produced an address other than the owner.
    error InvalidSigner();
    /// @notice A contract owner's ERC-1271 check did not return the magic value.
    error InvalidContractSignature();

    event UnorderedNonceInvalidation(address indexed owner, uint256 word, uint256 mask);

    // ------------------------------------------------------------------
    // EIP-712 constants
    // ------------------------------------------------------------------

    /// @dev Permit2's domain has a name but no version field.
    bytes32 private constant _DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,uint256 chainId,address verifyingContract)");

    bytes32 private constant _NAME_HASH = keccak256("Permit2");

    /// @dev = 0x618358ac3db8dc274f0cd8829da7e234bd48cd73c4a740aede1adec9846d06a1
    bytes32 private constant _TOKEN_PERMISSIONS_TYPEHASH = keccak256("TokenPermissions(address token,uint256 amount)");

    /// @dev Typehash of the plain (witness-less) permit.
    bytes32 private constant _PERMIT_TRANSFER_FROM_TYPEHASH = keccak256(
        "PermitTransferFrom(TokenPermissions permitted,address spender,uint256 nonce,uint256 deadline)"
        "TokenPermissions(address token,uint256 amount)"
    );

    /// @dev For witness permits the caller supplies the rest of the type
    ///      string, starting with the witness member ("Witness witness)...")
    ///      and followed by every referenced struct type in EIP-712 order.
    bytes private constant _WITNESS_PERMIT_TYPE_PREFIX =
        "PermitWitnessTransferFrom(TokenPermissions permitted,address spender,uint256 nonce,uint256 deadline,";

    /// @dev bytes4(keccak256("isValidSignature(bytes32,bytes)")).
    bytes4 private constant _ERC1271_MAGIC_VALUE = 0x1626ba7e;

    // ------------------------------------------------------------------
    // State
    // ------------------------------------------------------------------

    /// @notice owner => word index => 256 nonce flags. Nonce n lives in word
    ///         n >> 8 at bit n & 0xff; a set bit means used or invalidated.
    ///         Random 256-bit nonces (what x402 clients pick) almost never
    ///         share a word, and any order of use is fine.
    mapping(address => mapping(uint256 => uint256)) public nonceBitmap;

    // ------------------------------------------------------------------
    // EIP-712 domain
    // ------------------------------------------------------------------

    /// @notice Recomputed on each call from the current chain id and the
    ///         address the code runs at, so it is right wherever the runtime
    ///         code was placed and after any fork.
    // solhint-disable-next-line func-name-mixedcase
    function DOMAIN_SEPARATOR() public view returns (bytes32) {
        return keccak256(abi.encode(_DOMAIN_TYPEHASH, _NAME_HASH, block.chainid, address(this)));
    }

    // ------------------------------------------------------------------
    // Signature transfers
    // ------------------------------------------------------------------

    /// @notice Moves transferDetails.requestedAmount of permit.permitted.token
    ///         from `owner` to transferDetails.to, on the strength of the
    ///         owner's signature over `permit` with msg.sender as spender.
    ///         The owner must have approved this contract on the token.
    function permitTransferFrom(
        PermitTransferFrom calldata permit,
        SignatureTransferDetails calldata transferDetails,
        address owner,
        bytes calldata signature
    ) external {
        bytes32 structHash = keccak256(
            abi.encode(
                _PERMIT_TRANSFER_FROM_TYPEHASH,
                _hashTokenPermissions(permit.permitted),
                msg.sender,
                permit.nonce,
                permit.deadline
            )
        );
        _consumePermit(permit, transferDetails, owner, structHash, signature);
    }

    /// @notice As permitTransferFrom, but the signed struct also carries an
    ///         extra `witness` member chosen by the spender's protocol. The
    ///         caller passes the witness's EIP-712 hash and the tail of the
    ///         type string (see _WITNESS_PERMIT_TYPE_PREFIX); the x402 proxies
    ///         use this to bind the payee into the payer's signature.
    function permitWitnessTransferFrom(
        PermitTransferFrom calldata permit,
        SignatureTransferDetails calldata transferDetails,
        address owner,
        bytes32 witness,
        string calldata witnessTypeString,
        bytes calldata signature
    ) external {
        bytes32 typeHash = keccak256(bytes.concat(_WITNESS_PERMIT_TYPE_PREFIX, bytes(witnessTypeString)));
        bytes32 structHash = keccak256(
            abi.encode(
                typeHash,
                _hashTokenPermissions(permit.permitted),
                msg.sender,
                permit.nonce,
                permit.deadline,
                witness
            )
        );
        _consumePermit(permit, transferDetails, owner, structHash, signature);
    }

    /// @notice Sets every bit of `mask` in the caller's nonce word `wordPos`,
    ///         so that signatures using those nonces can never be spent.
    function invalidateUnorderedNonces(uint256 wordPos, uint256 mask) external {
        nonceBitmap[msg.sender][wordPos] |= mask;
        emit UnorderedNonceInvalidation(msg.sender, wordPos, mask);
    }

    // ------------------------------------------------------------------
    // Internals
    // ------------------------------------------------------------------

    /// @dev The common path. The checks run in Permit2's order (deadline,
    ///      amount, nonce, signature, transfer) so that a simulation fails on
    ///      the same error the canonical contract would report first.
    function _consumePermit(
        PermitTransferFrom calldata permit,
        SignatureTransferDetails calldata transferDetails,
        address owner,
        bytes32 structHash,
        bytes calldata signature
    ) private {
        // Usable up to and including the block whose timestamp equals the deadline.
        if (block.timestamp > permit.deadline) revert SignatureExpired(permit.deadline);
        uint256 maxAmount = permit.permitted.amount;
        if (transferDetails.requestedAmount > maxAmount) revert InvalidAmount(maxAmount);

        _markNonceUsed(owner, permit.nonce);

        bytes32 digest = keccak256(abi.encodePacked("\x19\x01", DOMAIN_SEPARATOR(), structHash));
        _checkSignature(owner, digest, signature);

        _pullTokens(permit.permitted.token, owner, transferDetails.to, transferDetails.requestedAmount);
    }

    function _hashTokenPermissions(TokenPermissions calldata permitted) private pure returns (bytes32) {
        return keccak256(abi.encode(_TOKEN_PERMISSIONS_TYPEHASH, permitted.token, permitted.amount));
    }

    /// @dev Flips the nonce's bit on, reverting if it was on already.
    function _markNonceUsed(address owner, uint256 nonce) private {
        uint256 word = nonce >> 8;
        uint256 flag = uint256(1) << (nonce & 0xff);
        uint256 current = nonceBitmap[owner][word];
        if (current & flag != 0) revert InvalidNonce();
        nonceBitmap[owner][word] = current | flag;
    }

    /// @dev An owner with code is asked through ERC-1271 and gets the raw
    ///      signature bytes; anyone else must have produced an ECDSA
    ///      signature, either r || s || v (65 bytes) or the EIP-2098 compact
    ///      form r || (yParity << 255 | s) (64 bytes). Like Permit2, `s` is not
    ///      range-checked: a malleated twin is harmless because the nonce is
    ///      spent either way.
    function _checkSignature(address owner, bytes32 digest, bytes calldata signature) private view {
        if (owner.code.length != 0) {
            (bool ok, bytes memory ret) =
                owner.staticcall(abi.encodeWithSelector(_ERC1271_MAGIC_VALUE, digest, signature));
            if (!ok || ret.length < 32 || bytes4(abi.decode(ret, (bytes32))) != _ERC1271_MAGIC_VALUE) {
                revert InvalidContractSignature();
            }
            return;
        }

        if (signature.length != 65 && signature.length != 64) revert InvalidSignatureLength();
        bytes32 r = bytes32(signature[0:32]);
        bytes32 s;
        uint8 v;
        if (signature.length == 65) {
            s = bytes32(signature[32:64]);
            v = uint8(signature[64]);
        } else {
            uint256 yParityAndS = uint256(bytes32(signature[32:64]));
            s = bytes32(yParityAndS & ((uint256(1) << 255) - 1));
            v = uint8(yParityAndS >> 255) + 27;
        }

        address recovered = ecrecover(digest, v, r, s);
        if (recovered == address(0)) revert InvalidSignature();
        if (recovered != owner) revert InvalidSigner();
    }

    /// @dev token.transferFrom(from, to, amount), accepting tokens that return
    ///      true and tokens that return nothing (USDT-style), and refusing an
    ///      address without code. A failing token's own revert reason is not
    ///      passed on: every failure (no allowance for this contract, too
    ///      small a balance, `false`) reverts with Permit2's string.
    function _pullTokens(address token, address from, address to, uint256 amount) private {
        (bool ok, bytes memory ret) =
            token.call(abi.encodeWithSignature("transferFrom(address,address,uint256)", from, to, amount));
        bool accepted = ok
            && (ret.length == 0 ? token.code.length != 0 : (ret.length >= 32 && abi.decode(ret, (uint256)) == 1));
        require(accepted, "TRANSFER_FROM_FAILED");
    }
}
