// SPDX-License-Identifier: MIT
pragma solidity 0.8.26;

/// A minimal ERC-20 for paywatch's tests. Every deployment is named
/// "Tether USD" / "USDT", so a second deployment is a perfect look-alike:
/// only the contract address tells them apart.
contract TestToken {
    string public constant name = "Tether USD";
    string public constant symbol = "USDT";
    uint8 public immutable decimals;
    uint256 public totalSupply;
    mapping(address => uint256) public balanceOf;

    event Transfer(address indexed from, address indexed to, uint256 value);

    constructor(uint8 decimals_, uint256 supply) {
        decimals = decimals_;
        totalSupply = supply;
        balanceOf[msg.sender] = supply;
        emit Transfer(address(0), msg.sender, supply);
    }

    function transfer(address to, uint256 value) public returns (bool) {
        require(balanceOf[msg.sender] >= value, "balance");
        balanceOf[msg.sender] -= value;
        balanceOf[to] += value;
        emit Transfer(msg.sender, to, value);
        return true;
    }

    /// Two transfers in one transaction (a batch payout): two logs.
    function transferTwice(address a, uint256 va, address b, uint256 vb) external returns (bool) {
        transfer(a, va);
        transfer(b, vb);
        return true;
    }
}
