# pragma version ~=0.4.3
"""
@title colorgrid settlement token and checkpoint anchor
@notice ERC-20 token mirroring the colorgrid P2P ledger (amounts in ntok, 9 decimals):
        the operator mints on verified delivery, burns per policy, settles one batch of
        transfers per interval, and anchors each ledger checkpoint once (write-once).
"""

event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256

event Approval:
    owner: indexed(address)
    spender: indexed(address)
    value: uint256

event Anchored:
    period: indexed(uint256)
    root: bytes32
    statement_hash: bytes32

MAX_BATCH: constant(uint256) = 256

name: public(String[32])
symbol: public(String[8])
decimals: public(uint8)
totalSupply: public(uint256)
balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])
operator: public(address)
anchor_root: public(HashMap[uint256, bytes32])
anchor_statement: public(HashMap[uint256, bytes32])


@deploy
def __init__(name_: String[32], symbol_: String[8], decimals_: uint8):
    self.name = name_
    self.symbol = symbol_
    self.decimals = decimals_
    self.operator = msg.sender


@internal
def _transfer(sender: address, receiver: address, amount: uint256):
    assert receiver != empty(address), "receiver is the zero address"
    assert self.balanceOf[sender] >= amount, "insufficient balance"
    self.balanceOf[sender] -= amount
    self.balanceOf[receiver] += amount
    log Transfer(sender=sender, receiver=receiver, value=amount)


@internal
def _mint(receiver: address, amount: uint256):
    assert receiver != empty(address), "receiver is the zero address"
    self.totalSupply += amount
    self.balanceOf[receiver] += amount
    log Transfer(sender=empty(address), receiver=receiver, value=amount)


@internal
def _burn(owner: address, amount: uint256):
    assert self.balanceOf[owner] >= amount, "burn exceeds balance"
    self.balanceOf[owner] -= amount
    self.totalSupply -= amount
    log Transfer(sender=owner, receiver=empty(address), value=amount)


@external
def transfer(receiver: address, amount: uint256) -> bool:
    self._transfer(msg.sender, receiver, amount)
    return True


@external
def approve(spender: address, amount: uint256) -> bool:
    self.allowance[msg.sender][spender] = amount
    log Approval(owner=msg.sender, spender=spender, value=amount)
    return True


@external
def transferFrom(sender: address, receiver: address, amount: uint256) -> bool:
    assert self.allowance[sender][msg.sender] >= amount, "allowance exceeded"
    self.allowance[sender][msg.sender] -= amount
    self._transfer(sender, receiver, amount)
    return True


@external
def mint(receiver: address, amount: uint256):
    assert msg.sender == self.operator, "only the operator mints"
    self._mint(receiver, amount)


@external
def burn(owner: address, amount: uint256):
    assert msg.sender == self.operator or msg.sender == owner, "only the operator or the owner burns"
    self._burn(owner, amount)


@external
def settle_batch(
    mint_to: DynArray[address, MAX_BATCH], mint_amounts: DynArray[uint256, MAX_BATCH],
    senders: DynArray[address, MAX_BATCH], receivers: DynArray[address, MAX_BATCH],
    amounts: DynArray[uint256, MAX_BATCH],
    burn_from: DynArray[address, MAX_BATCH], burn_amounts: DynArray[uint256, MAX_BATCH],
):
    """
    @notice One interval's settlement in one transaction: mints, then transfers, then burns,
            each in ledger order. Reverts as a whole if any step fails.
    """
    assert msg.sender == self.operator, "only the operator settles"
    assert len(mint_to) == len(mint_amounts), "mint arrays differ in length"
    assert len(senders) == len(receivers) and len(senders) == len(amounts), "transfer arrays differ in length"
    assert len(burn_from) == len(burn_amounts), "burn arrays differ in length"
    for i: uint256 in range(len(mint_to), bound=MAX_BATCH):
        self._mint(mint_to[i], mint_amounts[i])
    for i: uint256 in range(len(senders), bound=MAX_BATCH):
        self._transfer(senders[i], receivers[i], amounts[i])
    for i: uint256 in range(len(burn_from), bound=MAX_BATCH):
        self._burn(burn_from[i], burn_amounts[i])


@external
def anchor(period: uint256, root: bytes32, statement_hash: bytes32):
    """
    @notice Record a ledger checkpoint (Merkle root and SHA-256 of the signed statement). Write-once.
    """
    assert msg.sender == self.operator, "only the operator anchors"
    assert self.anchor_statement[period] == empty(bytes32), "period already anchored"
    assert statement_hash != empty(bytes32), "empty statement hash"
    self.anchor_root[period] = root
    self.anchor_statement[period] = statement_hash
    log Anchored(period=period, root=root, statement_hash=statement_hash)
