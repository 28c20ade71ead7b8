// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

/// @title X402TestWallet
/// @notice A minimal ERC-1271 contract wallet for the devnet: one owner key.
///         It signs the way deployed smart wallets do (Coinbase Smart
///         Wallet's `SignatureWrapper`): a signature is
///         `abi.encode(uint256 ownerIndex, bytes ownerSignature)`, where the
///         owner's is a 65-byte ECDSA `r || s || v` over the digest itself.
///         Such a signature never recovers to the wallet, so a verifier must
///         ask the wallet (`isValidSignature`), as x402 facilitators do.
contract X402TestWallet {
    /// @dev bytes4(keccak256("isValidSignature(bytes32,bytes)")).
    bytes4 private constant _ERC1271_MAGIC_VALUE = 0x1626ba7e;
    /// @dev Half the secp256k1 group order: higher `s` values are malleable.
    uint256 private constant _HALF_CURVE_ORDER =
        0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    address public immutable owner;

    constructor(address owner_) {
        owner = owner_;
    }

    /// @notice ERC-1271: the magic value when `signature` is the owner's
    ///         (index 0) over `hash`; 0xffffffff otherwise. Malformed input
    ///         reverts, which callers count as invalid.
    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        (uint256 index, bytes memory inner) = abi.decode(signature, (uint256, bytes));
        if (index != 0 || inner.length != 65) {
            return 0xffffffff;
        }
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly {
            r := mload(add(inner, 0x20))
            s := mload(add(inner, 0x40))
            v := byte(0, mload(add(inner, 0x60)))
        }
        if (uint256(s) > _HALF_CURVE_ORDER || (v != 27 && v != 28)) {
            return 0xffffffff;
        }
        address signer = ecrecover(hash, v, r, s);
        return signer != address(0) && signer == owner ? _ERC1271_MAGIC_VALUE : bytes4(0xffffffff);
    }

    /// @notice Lets the owner move what the wallet holds.
    function execute(address to, uint256 value, bytes calldata data) external returns (bytes memory) {
        require(msg.sender == owner, "X402TestWallet: caller is not the owner");
        (bool ok, bytes memory result) = to.call{value: value}(data);
        require(ok, "X402TestWallet: call reverted");
        return result;
    }
}

/// @title X402TestWalletFactory
/// @notice Deploys X402TestWallets at CREATE2 addresses known before
///         deployment, so a wallet can be paid to (and can sign, with an
///         EIP-6492 wrapper naming this factory) before it exists.
contract X402TestWalletFactory {
    event WalletCreated(address indexed wallet, address indexed owner, uint256 salt);

    /// @notice The wallet of `owner` for `salt`, deployed if it is not yet.
    function createAccount(address owner, uint256 salt) external returns (address wallet) {
        wallet = getAddress(owner, salt);
        if (wallet.code.length > 0) {
            return wallet;
        }
        wallet = address(new X402TestWallet{salt: bytes32(salt)}(owner));
        emit WalletCreated(wallet, owner, salt);
    }

    /// @notice Where `createAccount(owner, salt)` puts the wallet.
    function getAddress(address owner, uint256 salt) public view returns (address) {
        bytes32 code = keccak256(abi.encodePacked(type(X402TestWallet).creationCode, abi.encode(owner)));
        return address(uint160(uint256(keccak256(abi.encodePacked(bytes1(0xff), address(this), bytes32(salt), code)))));
    }
}
