// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

/// @title X402TestToken
/// @notice A minimal ERC-20 with EIP-3009 ("transfer with authorization") that
///         reproduces the behaviour of USDC (FiatToken v2.2) closely enough to
///         test an x402 facilitator against a local chain: same typehashes,
///         same EIP-712 domain shape, same signature rules and the same revert
///         strings. It is NOT USDC: there is no pausing, blacklisting, upgrade
///         proxy or minter allowance, and the deployer can mint at will.
///         Never deploy it anywhere that value is at stake.
/// @dev Self-contained on purpose (no OpenZeppelin import) so the repo can
///      compile it with nothing but solc-js; see scripts/build-token.
contract X402TestToken {
    // ------------------------------------------------------------------
    // ERC-20 state
    // ------------------------------------------------------------------

    string private _name;
    string private _version;
    string private _symbol;
    uint8 private immutable _decimals;
    uint256 private _totalSupply;
    mapping(address => uint256) private _balances;
    mapping(address => mapping(address => uint256)) private _allowances;

    /// @notice The deployer; the only account allowed to mint.
    address public immutable owner;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);

    // ------------------------------------------------------------------
    // EIP-712 / EIP-3009 state
    // ------------------------------------------------------------------

    bytes32 private constant _EIP712_DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");

    /// @dev = 0x7c7c6cdb67a18743f49ec6fa9b35f50d52ed05cbed4cc592e13b44501c1a2267, as in USDC.
    bytes32 public constant TRANSFER_WITH_AUTHORIZATION_TYPEHASH = keccak256(
        "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
    );

    /// @dev = 0xd099cc98ef71107a616c4f0f941f04c322d8e254fe26b3c6668db87aae413de8, as in USDC.
    bytes32 public constant RECEIVE_WITH_AUTHORIZATION_TYPEHASH = keccak256(
        "ReceiveWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
    );

    /// @dev = 0x158b0a9edf7a828aad02f63cd515c68ef2f50ba807396f6d12842833a1597429, as in USDC.
    bytes32 public constant CANCEL_AUTHORIZATION_TYPEHASH =
        keccak256("CancelAuthorization(address authorizer,bytes32 nonce)");

    /// @dev Upper bound for `s` (secp256k1n / 2). Signatures with a larger `s`
    ///      are malleable twins of a valid one (EIP-2); USDC rejects them, and
    ///      a facilitator that normalises `s` itself must not be surprised here.
    uint256 private constant _HALF_CURVE_ORDER =
        0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    /// @dev ERC-1271 magic value: bytes4(keccak256("isValidSignature(bytes32,bytes)")).
    bytes4 private constant _ERC1271_MAGIC_VALUE = 0x1626ba7e;

    // The name and version never change, so their hashes are fixed at
    // deployment; the separator is cached for the deployment chain and only
    // recomputed if the chain id changes (i.e. after a fork), so a signature
    // made for one chain can never be replayed on the other.
    bytes32 private immutable _hashedName;
    bytes32 private immutable _hashedVersion;
    uint256 private immutable _cachedChainId;
    bytes32 private immutable _cachedDomainSeparator;

    /// @dev authorizer => nonce => used or canceled. EIP-3009 nonces are
    ///      random 32-byte values rather than a counter, so that a payer can
    ///      have many authorizations in flight at once.
    mapping(address => mapping(bytes32 => bool)) private _authorizationStates;

    event AuthorizationUsed(address indexed authorizer, bytes32 indexed nonce);
    event AuthorizationCanceled(address indexed authorizer, bytes32 indexed nonce);

    // ------------------------------------------------------------------
    // Construction
    // ------------------------------------------------------------------

    /// @param name_     ERC-20 name and EIP-712 domain name (USDC: "USD Coin").
    /// @param version_  EIP-712 domain version (USDC: "2").
    /// @param symbol_   ERC-20 symbol (USDC: "USDC").
    /// @param decimals_ ERC-20 decimals (USDC: 6).
    constructor(string memory name_, string memory version_, string memory symbol_, uint8 decimals_) {
        _name = name_;
        _version = version_;
        _symbol = symbol_;
        _decimals = decimals_;
        owner = msg.sender;

        _hashedName = keccak256(bytes(name_));
        _hashedVersion = keccak256(bytes(version_));
        _cachedChainId = block.chainid;
        _cachedDomainSeparator = _buildDomainSeparator(keccak256(bytes(name_)), keccak256(bytes(version_)));
    }

    // ------------------------------------------------------------------
    // ERC-20
    // ------------------------------------------------------------------

    function name() external view returns (string memory) {
        return _name;
    }

    function symbol() external view returns (string memory) {
        return _symbol;
    }

    function decimals() external view returns (uint8) {
        return _decimals;
    }

    /// @notice The EIP-712 domain version, as USDC exposes it.
    function version() external view returns (string memory) {
        return _version;
    }

    function totalSupply() external view returns (uint256) {
        return _totalSupply;
    }

    function balanceOf(address account) external view returns (uint256) {
        return _balances[account];
    }

    function allowance(address owner_, address spender) external view returns (uint256) {
        return _allowances[owner_][spender];
    }

    function transfer(address to, uint256 value) external returns (bool) {
        _transfer(msg.sender, to, value);
        return true;
    }

    function approve(address spender, uint256 value) external returns (bool) {
        _approve(msg.sender, spender, value);
        return true;
    }

    /// @dev Like USDC, an allowance of type(uint256).max is not treated as
    ///      infinite: every transferFrom spends it.
    function transferFrom(address from, address to, uint256 value) external returns (bool) {
        uint256 current = _allowances[from][msg.sender];
        require(value <= current, "ERC20: transfer amount exceeds allowance");
        _transfer(from, to, value);
        unchecked {
            _allowances[from][msg.sender] = current - value;
        }
        return true;
    }

    /// @notice Creates `amount` new tokens for `to`. Only the deployer may
    ///         call it; the devnet uses it to fund dev accounts.
    function mint(address to, uint256 amount) external {
        require(msg.sender == owner, "X402TestToken: caller is not the owner");
        require(to != address(0), "ERC20: mint to the zero address");
        _totalSupply += amount; // checked: overflow reverts
        unchecked {
            // Cannot overflow: a balance never exceeds the total supply.
            _balances[to] += amount;
        }
        emit Transfer(address(0), to, amount);
    }

    function _transfer(address from, address to, uint256 value) private {
        require(from != address(0), "ERC20: transfer from the zero address");
        require(to != address(0), "ERC20: transfer to the zero address");
        uint256 fromBalance = _balances[from];
        require(value <= fromBalance, "ERC20: transfer amount exceeds balance");
        unchecked {
            // Cannot overflow: the sum of all balances is the total supply.
            _balances[from] = fromBalance - value;
            _balances[to] += value;
        }
        emit Transfer(from, to, value);
    }

    function _approve(address owner_, address spender, uint256 value) private {
        require(owner_ != address(0), "ERC20: approve from the zero address");
        require(spender != address(0), "ERC20: approve to the zero address");
        _allowances[owner_][spender] = value;
        emit Approval(owner_, spender, value);
    }

    // ------------------------------------------------------------------
    // EIP-712 and EIP-5267
    // ------------------------------------------------------------------

    // solhint-disable-next-line func-name-mixedcase
    function DOMAIN_SEPARATOR() external view returns (bytes32) {
        return _domainSeparator();
    }

    /// @notice EIP-5267: lets wallets and facilitators discover the domain
    ///         instead of hard-coding name and version.
    function eip712Domain()
        external
        view
        returns (
            bytes1 fields,
            string memory name_,
            string memory version_,
            uint256 chainId,
            address verifyingContract,
            bytes32 salt,
            uint256[] memory extensions
        )
    {
        // 0x0f: name, version, chainId and verifyingContract are used; no salt.
        return (hex"0f", _name, _version, block.chainid, address(this), bytes32(0), new uint256[](0));
    }

    function _domainSeparator() private view returns (bytes32) {
        if (block.chainid == _cachedChainId) {
            return _cachedDomainSeparator;
        }
        return _buildDomainSeparator(_hashedName, _hashedVersion);
    }

    function _buildDomainSeparator(bytes32 hashedName, bytes32 hashedVersion) private view returns (bytes32) {
        return keccak256(abi.encode(_EIP712_DOMAIN_TYPEHASH, hashedName, hashedVersion, block.chainid, address(this)));
    }

    // ------------------------------------------------------------------
    // EIP-3009
    // ------------------------------------------------------------------

    /// @notice Whether `nonce` of `authorizer` has been used or canceled.
    function authorizationState(address authorizer, bytes32 nonce) external view returns (bool) {
        return _authorizationStates[authorizer][nonce];
    }

    /// @notice Moves `value` from `from` to `to` on the strength of a signature
    ///         by `from`; anyone may submit it (x402 facilitators do).
    function transferWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external {
        // USDC v2.2 packs (r, s, v) and takes the same path as the bytes form,
        // so a contract signer's ERC-1271 check also sees these 65 bytes.
        _transferWithAuthorization(from, to, value, validAfter, validBefore, nonce, abi.encodePacked(r, s, v));
    }

    /// @notice As above, with the signature as bytes: r || s || v (65 bytes)
    ///         for an EOA, or anything the signer's ERC-1271 check accepts.
    function transferWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes memory signature
    ) external {
        _transferWithAuthorization(from, to, value, validAfter, validBefore, nonce, signature);
    }

    /// @notice Like transferWithAuthorization, but only the payee may submit
    ///         it, so that a front-runner cannot take the authorization out of
    ///         a contract's call (e.g. a deposit) and settle it on its own.
    function receiveWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external {
        _receiveWithAuthorization(from, to, value, validAfter, validBefore, nonce, abi.encodePacked(r, s, v));
    }

    function receiveWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes memory signature
    ) external {
        _receiveWithAuthorization(from, to, value, validAfter, validBefore, nonce, signature);
    }

    /// @notice Burns an unused nonce so that the authorization signed with it
    ///         can never be executed.
    function cancelAuthorization(address authorizer, bytes32 nonce, uint8 v, bytes32 r, bytes32 s) external {
        _cancelAuthorization(authorizer, nonce, abi.encodePacked(r, s, v));
    }

    function cancelAuthorization(address authorizer, bytes32 nonce, bytes memory signature) external {
        _cancelAuthorization(authorizer, nonce, signature);
    }

    function _transferWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes memory signature
    ) private {
        _requireValidAuthorization(from, nonce, validAfter, validBefore);
        _requireValidSignature(
            from,
            keccak256(
                abi.encode(TRANSFER_WITH_AUTHORIZATION_TYPEHASH, from, to, value, validAfter, validBefore, nonce)
            ),
            signature
        );
        _markAuthorizationAsUsed(from, nonce);
        _transfer(from, to, value);
    }

    function _receiveWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes memory signature
    ) private {
        require(to == msg.sender, "FiatTokenV2: caller must be the payee");
        _requireValidAuthorization(from, nonce, validAfter, validBefore);
        _requireValidSignature(
            from,
            keccak256(
                abi.encode(RECEIVE_WITH_AUTHORIZATION_TYPEHASH, from, to, value, validAfter, validBefore, nonce)
            ),
            signature
        );
        _markAuthorizationAsUsed(from, nonce);
        _transfer(from, to, value);
    }

    function _cancelAuthorization(address authorizer, bytes32 nonce, bytes memory signature) private {
        _requireUnusedAuthorization(authorizer, nonce);
        _requireValidSignature(authorizer, keccak256(abi.encode(CANCEL_AUTHORIZATION_TYPEHASH, authorizer, nonce)), signature);
        _authorizationStates[authorizer][nonce] = true;
        emit AuthorizationCanceled(authorizer, nonce);
    }

    /// @dev The window is open at both ends, exactly as in USDC: an
    ///      authorization is valid only while validAfter < now < validBefore.
    function _requireValidAuthorization(address authorizer, bytes32 nonce, uint256 validAfter, uint256 validBefore)
        private
        view
    {
        require(block.timestamp > validAfter, "FiatTokenV2: authorization is not yet valid");
        require(block.timestamp < validBefore, "FiatTokenV2: authorization is expired");
        _requireUnusedAuthorization(authorizer, nonce);
    }

    function _requireUnusedAuthorization(address authorizer, bytes32 nonce) private view {
        require(!_authorizationStates[authorizer][nonce], "FiatTokenV2: authorization is used or canceled");
    }

    function _markAuthorizationAsUsed(address authorizer, bytes32 nonce) private {
        _authorizationStates[authorizer][nonce] = true;
        emit AuthorizationUsed(authorizer, nonce);
    }

    // ------------------------------------------------------------------
    // Signature checking (USDC's SignatureChecker + ECRecover)
    // ------------------------------------------------------------------

    /// @dev Reverts unless `signature` by `signer` over the EIP-712 digest of
    ///      `structHash` is valid. As in USDC v2.2, an account with code is
    ///      checked with ERC-1271 and anything else with ecrecover; the
    ///      ecrecover path keeps USDC's own, more specific revert strings.
    function _requireValidSignature(address signer, bytes32 structHash, bytes memory signature) private view {
        bytes32 digest = keccak256(abi.encodePacked("\x19\x01", _domainSeparator(), structHash));
        bool valid;
        if (signer.code.length == 0) {
            valid = _recover(digest, signature) == signer;
        } else {
            valid = _isValidERC1271Signature(signer, digest, signature);
        }
        require(valid, "FiatTokenV2: invalid signature");
    }

    function _recover(bytes32 digest, bytes memory signature) private pure returns (address) {
        require(signature.length == 65, "ECRecover: invalid signature length");
        bytes32 r;
        bytes32 s;
        uint8 v;
        // The layout is r (32 bytes) || s (32 bytes) || v (1 byte), after the
        // 32-byte length word of the `bytes` in memory.
        assembly {
            r := mload(add(signature, 0x20))
            s := mload(add(signature, 0x40))
            v := byte(0, mload(add(signature, 0x60)))
        }
        if (uint256(s) > _HALF_CURVE_ORDER) {
            revert("ECRecover: invalid signature 's' value");
        }
        // Unlike some libraries, 0 and 1 are not promoted to 27 and 28: USDC
        // rejects them, so a client that sends raw recovery ids must fail here
        // as it would on mainnet.
        if (v != 27 && v != 28) {
            revert("ECRecover: invalid signature 'v' value");
        }
        address recovered = ecrecover(digest, v, r, s);
        require(recovered != address(0), "ECRecover: invalid signature");
        return recovered;
    }

    /// @dev A staticcall, so a signer contract cannot change state or reenter.
    ///      A revert, short return data or any other value counts as invalid.
    function _isValidERC1271Signature(address signer, bytes32 digest, bytes memory signature)
        private
        view
        returns (bool)
    {
        (bool success, bytes memory result) =
            signer.staticcall(abi.encodeWithSelector(_ERC1271_MAGIC_VALUE, digest, signature));
        return success && result.length >= 32 && abi.decode(result, (bytes32)) == bytes32(_ERC1271_MAGIC_VALUE);
    }
}
