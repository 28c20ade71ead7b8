// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

/// @dev The one Permit2 entry point the proxies call, plus the tuple types it
///      takes. The layouts are fixed by Permit2's ABI.
interface IX402SignatureTransfer {
    struct TokenPermissions {
        address token;
        uint256 amount;
    }

    struct PermitTransferFrom {
        TokenPermissions permitted;
        uint256 nonce;
        uint256 deadline;
    }

    struct SignatureTransferDetails {
        address to;
        uint256 requestedAmount;
    }

    function permitWitnessTransferFrom(
        PermitTransferFrom calldata permit,
        SignatureTransferDetails calldata transferDetails,
        address owner,
        bytes32 witness,
        string calldata witnessTypeString,
        bytes calldata signature
    ) external;
}

/// @dev EIP-2612's permit, used only by settleWithPermit.
interface IX402TokenPermit {
    function permit(address owner, address spender, uint256 value, uint256 deadline, uint8 v, bytes32 r, bytes32 s)
        external;
}

/// @title X402Permit2ProxyBase
/// @notice Shared plumbing of our two x402 Permit2 proxies, independently
///         written for local devnets. Together with the two contracts below it
///         exposes the same external ABI (functions, selectors, events,
///         errors) as the x402 proxies deployed at
///         0x402085c248EeA27D92E8b30b2C58ed07f9E20001 (exact) and
///         0x4020A4f3b7b90ccA423B9fabCc0CE57C6C240002 (upto), so the official
///         x402 clients and facilitators can drive them unchanged. It is NOT
///         the x402 code. Never deploy it anywhere that value is at stake.
/// @dev How a proxy works: the payer signs a Permit2 PermitWitnessTransferFrom
///      whose spender is the proxy and whose witness names the payee (and, for
///      upto, the facilitator). Permit2 hashes msg.sender in as the spender, so
///      only this proxy can redeem the signature, and it always redeems it
///      towards witness.to; whoever submits the transaction cannot redirect
///      the funds.
///
///      The devnet places the runtime code at the canonical addresses with
///      anvil_setCode, which skips the constructor. Hence no immutables: the
///      Permit2 address is a compile-time constant (it is the same on every
///      chain), and the reentrancy lock treats the untouched zero slot as
///      "unlocked".
abstract contract X402Permit2ProxyBase {
    /// @notice Permit2's canonical address (identical on every EVM chain).
    IX402SignatureTransfer public constant PERMIT2 =
        IX402SignatureTransfer(0x000000000022D473030F116dDEE9F6B43aC78BA3);

    /// @notice EIP-2612 parameters for settleWithPermit, grouped in one tuple.
    struct EIP2612Permit {
        uint256 value;
        uint256 deadline;
        bytes32 r;
        bytes32 s;
        uint8 v;
    }

    event Settled();
    event SettledWithPermit();
    /// @notice The token's permit() reverted with Error(string).
    event EIP2612PermitFailedWithReason(address indexed token, address indexed owner, string reason);
    /// @notice The token's permit() reverted with Panic(uint256).
    event EIP2612PermitFailedWithPanic(address indexed token, address indexed owner, uint256 errorCode);
    /// @notice The token's permit() reverted some other way (custom error, no data, no such function).
    event EIP2612PermitFailedWithData(address indexed token, address indexed owner, bytes data);

    /// @notice Part of the canonical ABI; never raised here, since the Permit2
    ///         address is a constant rather than a constructor argument.
    error InvalidPermit2Address();
    error InvalidDestination();
    error PaymentTooEarly();
    error InvalidOwner();
    error InvalidAmount();
    error Permit2612AmountMismatch();
    error ReentrancyGuardReentrantCall();

    /// @dev 1 while a settlement is running; 0 (also the state right after
    ///      anvil_setCode) otherwise.
    uint256 private _settling;

    modifier nonReentrant() {
        if (_settling == 1) revert ReentrancyGuardReentrantCall();
        _settling = 1;
        _;
        _settling = 0;
    }

    /// @dev Validates what Permit2 itself does not know about (the amount
    ///      being non-zero, the parties, the witness's start time), then asks
    ///      Permit2 to move `amount` to `to`. Permit2 checks the deadline, the
    ///      ceiling, the nonce and the signature.
    function _redeem(
        IX402SignatureTransfer.PermitTransferFrom calldata permit,
        uint256 amount,
        address owner,
        address to,
        uint256 validAfter,
        bytes32 witnessHash,
        string memory witnessTypeString,
        bytes calldata signature
    ) internal {
        if (amount == 0) revert InvalidAmount();
        if (owner == address(0)) revert InvalidOwner();
        if (to == address(0)) revert InvalidDestination();
        if (block.timestamp < validAfter) revert PaymentTooEarly();

        PERMIT2.permitWitnessTransferFrom(
            permit,
            IX402SignatureTransfer.SignatureTransferDetails({to: to, requestedAmount: amount}),
            owner,
            witnessHash,
            witnessTypeString,
            signature
        );
    }

    /// @dev Best effort: submits the payer's EIP-2612 approval of Permit2.
    ///      Its failure is only logged, because the approval may already be in
    ///      place (e.g. someone front-ran the permit) or the token may not
    ///      support EIP-2612 at all; the Permit2 transfer that follows is what
    ///      decides. The value must equal the signed Permit2 amount.
    function _tryTokenPermit(address token, address owner, EIP2612Permit calldata p, uint256 permitted) internal {
        if (p.value != permitted) revert Permit2612AmountMismatch();
        try IX402TokenPermit(token).permit(owner, address(PERMIT2), p.value, p.deadline, p.v, p.r, p.s) {}
        catch Error(string memory reason) {
            emit EIP2612PermitFailedWithReason(token, owner, reason);
        } catch Panic(uint256 code) {
            emit EIP2612PermitFailedWithPanic(token, owner, code);
        } catch (bytes memory data) {
            emit EIP2612PermitFailedWithData(token, owner, data);
        }
    }
}

/// @title X402ExactPermit2Proxy
/// @notice ABI-compatible with x402ExactPermit2Proxy: always moves the full
///         signed amount to the payee named in the witness. Anyone may submit.
contract X402ExactPermit2Proxy is X402Permit2ProxyBase {
    /// @notice Tail of the Permit2 witness type string for x402 `exact`.
    string public constant WITNESS_TYPE_STRING =
        "Witness witness)TokenPermissions(address token,uint256 amount)Witness(address to,uint256 validAfter)";

    /// @notice = 0xd97b3239a7f32295517bd14cb074edfdd188dfe5eb42f802bb26d4fd1eb12c37
    bytes32 public constant WITNESS_TYPEHASH = keccak256("Witness(address to,uint256 validAfter)");

    /// @notice The signed witness: payee and earliest settlement time.
    struct Witness {
        address to;
        uint256 validAfter;
    }

    /// @notice Settles with a Permit2 signature; the payer must already have
    ///         approved Permit2 on the token.
    function settle(
        IX402SignatureTransfer.PermitTransferFrom calldata permit,
        address owner,
        Witness calldata witness,
        bytes calldata signature
    ) external nonReentrant {
        _settleExact(permit, owner, witness, signature);
        emit Settled();
    }

    /// @notice Like settle, but first tries the payer's EIP-2612 permit so
    ///         that Permit2 gets its token approval in the same transaction.
    function settleWithPermit(
        EIP2612Permit calldata permit2612,
        IX402SignatureTransfer.PermitTransferFrom calldata permit,
        address owner,
        Witness calldata witness,
        bytes calldata signature
    ) external nonReentrant {
        _tryTokenPermit(permit.permitted.token, owner, permit2612, permit.permitted.amount);
        _settleExact(permit, owner, witness, signature);
        emit SettledWithPermit();
    }

    function _settleExact(
        IX402SignatureTransfer.PermitTransferFrom calldata permit,
        address owner,
        Witness calldata witness,
        bytes calldata signature
    ) private {
        bytes32 witnessHash = keccak256(abi.encode(WITNESS_TYPEHASH, witness.to, witness.validAfter));
        _redeem(
            permit,
            permit.permitted.amount,
            owner,
            witness.to,
            witness.validAfter,
            witnessHash,
            WITNESS_TYPE_STRING,
            signature
        );
    }
}

/// @title X402UptoPermit2Proxy
/// @notice ABI-compatible with x402UptoPermit2Proxy: the payer signs a
///         ceiling, and the facilitator named in the witness (and only it)
///         settles any amount from 1 up to that ceiling. The nonce is spent
///         on the first settlement, so one signature pays at most once.
contract X402UptoPermit2Proxy is X402Permit2ProxyBase {
    /// @notice Tail of the Permit2 witness type string for x402 `upto`.
    string public constant WITNESS_TYPE_STRING =
        "Witness witness)TokenPermissions(address token,uint256 amount)Witness(address to,address facilitator,uint256 validAfter)";

    /// @notice = 0xd4171c445a74218b01d4fd8af34ff1106580ea1e36ff837e64484bfaa2253b75
    bytes32 public constant WITNESS_TYPEHASH = keccak256("Witness(address to,address facilitator,uint256 validAfter)");

    /// @notice msg.sender is not witness.facilitator.
    error UnauthorizedFacilitator();
    /// @notice The requested amount is above the signed ceiling.
    error AmountExceedsPermitted();

    /// @notice The signed witness: payee, the only account allowed to settle,
    ///         and earliest settlement time.
    struct Witness {
        address to;
        address facilitator;
        uint256 validAfter;
    }

    /// @notice Settles `amount` (0 < amount <= permit.permitted.amount).
    function settle(
        IX402SignatureTransfer.PermitTransferFrom calldata permit,
        uint256 amount,
        address owner,
        Witness calldata witness,
        bytes calldata signature
    ) external nonReentrant {
        _checkCaller(permit, amount, witness);
        _settleUpto(permit, amount, owner, witness, signature);
        emit Settled();
    }

    /// @notice Like settle, but first tries the payer's EIP-2612 permit for
    ///         Permit2 (its value must equal the signed ceiling).
    function settleWithPermit(
        EIP2612Permit calldata permit2612,
        IX402SignatureTransfer.PermitTransferFrom calldata permit,
        uint256 amount,
        address owner,
        Witness calldata witness,
        bytes calldata signature
    ) external nonReentrant {
        _checkCaller(permit, amount, witness);
        _tryTokenPermit(permit.permitted.token, owner, permit2612, permit.permitted.amount);
        _settleUpto(permit, amount, owner, witness, signature);
        emit SettledWithPermit();
    }

    function _checkCaller(
        IX402SignatureTransfer.PermitTransferFrom calldata permit,
        uint256 amount,
        Witness calldata witness
    ) private view {
        if (amount > permit.permitted.amount) revert AmountExceedsPermitted();
        if (msg.sender != witness.facilitator) revert UnauthorizedFacilitator();
    }

    function _settleUpto(
        IX402SignatureTransfer.PermitTransferFrom calldata permit,
        uint256 amount,
        address owner,
        Witness calldata witness,
        bytes calldata signature
    ) private {
        bytes32 witnessHash =
            keccak256(abi.encode(WITNESS_TYPEHASH, witness.to, witness.facilitator, witness.validAfter));
        _redeem(permit, amount, owner, witness.to, witness.validAfter, witnessHash, WITNESS_TYPE_STRING, signature);
    }
}
