// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

/// @title X402PlainToken
/// @notice A bare ERC-20 for local devnets: no EIP-3009, no EIP-2612, no
///         EIP-712 domain. x402 clients can pay with it only through Permit2
///         (extra.assetTransferMethod = "permit2", or the upto scheme), which
///         is exactly what it exists to test. The deployer can mint at will.
///         Never deploy it anywhere that value is at stake.
/// @dev Self-contained (no imports) so that solc-js alone can build it; see
///      scripts/build-token. An allowance of type(uint256).max is treated as
///      unlimited and never decreases, as in most deployed tokens; that is
///      the allowance the x402 clients' approval helpers give Permit2.
contract X402PlainToken {
    string private _name;
    string private _symbol;
    uint8 private immutable _decimals;
    uint256 private _totalSupply;
    mapping(address => uint256) private _balances;
    mapping(address => mapping(address => uint256)) private _allowances;

    /// @notice The deployer; the only account allowed to mint.
    address public immutable owner;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);

    /// @param name_     ERC-20 name.
    /// @param symbol_   ERC-20 symbol.
    /// @param decimals_ ERC-20 decimals (the devnet uses 18).
    constructor(string memory name_, string memory symbol_, uint8 decimals_) {
        _name = name_;
        _symbol = symbol_;
        _decimals = decimals_;
        owner = msg.sender;
    }

    function name() external view returns (string memory) {
        return _name;
    }

    function symbol() external view returns (string memory) {
        return _symbol;
    }

    function decimals() external view returns (uint8) {
        return _decimals;
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
        _move(msg.sender, to, value);
        return true;
    }

    function approve(address spender, uint256 value) external returns (bool) {
        require(spender != address(0), "ERC20: approve to the zero address");
        _allowances[msg.sender][spender] = value;
        emit Approval(msg.sender, spender, value);
        return true;
    }

    function transferFrom(address from, address to, uint256 value) external returns (bool) {
        uint256 allowed = _allowances[from][msg.sender];
        if (allowed != type(uint256).max) {
            require(value <= allowed, "ERC20: insufficient allowance");
            unchecked {
                _allowances[from][msg.sender] = allowed - value;
            }
        }
        _move(from, to, value);
        return true;
    }

    /// @notice Creates `amount` new tokens for `to`. Only the deployer may
    ///         call it; the devnet uses it to fund dev accounts.
    function mint(address to, uint256 amount) external {
        require(msg.sender == owner, "X402PlainToken: caller is not the owner");
        require(to != address(0), "ERC20: mint to the zero address");
        _totalSupply += amount; // checked: overflow reverts
        unchecked {
            // Cannot overflow: a balance never exceeds the total supply.
            _balances[to] += amount;
        }
        emit Transfer(address(0), to, amount);
    }

    function _move(address from, address to, uint256 value) private {
        require(to != address(0), "ERC20: transfer to the zero address");
        uint256 available = _balances[from];
        require(value <= available, "ERC20: transfer amount exceeds balance");
        unchecked {
            // Cannot overflow: the sum of all balances is the total supply.
            _balances[from] = available - value;
            _balances[to] += value;
        }
        emit Transfer(from, to, value);
    }
}
