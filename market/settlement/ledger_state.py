"""The ledger's rules as a state machine: every entry is checked against the state built from
the entries before it.  Appending runs these rules before an entry is accepted; verification
replays them over the stored chain, so both agree by construction.

Entry kinds and payloads (integers in the units of `market.settlement.units`):

    genesis        ledger_id, operator {key_id, public_hex}, validators [[id, public_hex]...],
                   threshold_k, credit_limit_ntok, burn_reasons [...]
    register_key   key_id, role (participant|meter), public_hex, owner
    meter_reading  meter_id, participant_id, interval, export_wh, import_wh, ts_ms, meter_sig
    mint           account, amount_ntok, reason="delivery", reading_seq, qty_wh, price_uusd_per_kwh
    transfer       from, to, amount_ntok, reason, [reading_seq, qty_wh, price_uusd_per_kwh], ref
    burn           account, amount_ntok, reason (one of the genesis burn_reasons), ref

Sidechains and the main chain (`chains.py`) use three more kinds, on the same state machine:

    register_chain    (main chain) ledger_id, operator_public_hex, validators [[id, public_hex]...],
                      threshold_k — a sidechain and the validator set its checkpoints need
    chain_checkpoint  (main chain) ledger_id, statement (the sidechain's checkpoint statement as
                      text), signatures [[validator_id, sig_hex]...] — recorded in order: period
                      increases, seq ranges follow on, prev_checkpoint links, >= k valid signatures
    exchange          (sidechain) exchange_id, direction (export|import), counter_chain (the other
                      sidechain's ledger_id), account, qty_wh, price_uusd_per_kwh, amount_ntok
                      [, counter_seq, counter_hash on the import side: the export entry it matches];
                      export credits `account` and debits the clearing account "chain:<counter>",
                      import the reverse; an exchange_id settles once per chain

Periodic burn (the article's token policy; only when genesis declares it):

    genesis        + periodic_burn {start_ts_ms, period_ms, rate_ppm, exempt [...]}
    periodic_burn  period k, burns [[account, amount_ntok]...] — exactly floor(balance x rate_ppm / 1e6)
                   of every positive balance (clearing accounts "chain:*" and `exempt` accounts
                   excepted), sorted by account; booked once per period, in order, at a ts_ms at or
                   after the period's end (start + (k+1) x period_ms); while it is due, every other
                   entry stamped at or after that end is refused — so a ledger cannot skip a burn

Token rules: tokens are minted only against verified delivery — a meter reading signed by the
registered meter of the account's owner; every payment for energy to a seller (mint from the
grid's purchase, or a P2P `transfer` with reason "trade") claims Wh against the seller's reading
and cannot exceed its exported Wh; amount = qty_wh x price exactly.  Conservation:
sum(balances) == minted - burned, always.
"""
from __future__ import annotations

import hashlib

from market.settlement import canonical
from market.settlement.errors import KeyError_, LedgerError, SignatureError
from market.settlement.keys import KeyRegistry, verify

KINDS = ("genesis", "register_key", "meter_reading", "mint", "transfer", "burn",
         "register_chain", "chain_checkpoint", "exchange", "periodic_burn")
PPM = 1_000_000
CLEARING_PREFIX = "chain:"  # account of another sidechain on this one (exempt from the credit limit)
READING_FIELDS = ("meter_id", "participant_id", "interval", "export_wh", "import_wh", "ts_ms")


def reading_message(payload: dict) -> bytes:
    """The bytes a meter signs: canonical encoding of the reading without its signature."""
    return canonical.encode({k: payload[k] for k in READING_FIELDS}, "meter reading")


def _int(payload: dict, name: str, lo: int = 0) -> int:
    value = payload.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise LedgerError(f"field {name}: expected integer >= {lo}, got {value!r}")
    return value


def _str(payload: dict, name: str) -> str:
    value = payload.get(name)
    if not isinstance(value, str) or not value:
        raise LedgerError(f"field {name}: expected non-empty str, got {value!r}")
    return value


class LedgerState:
    def __init__(self) -> None:
        self.registry = KeyRegistry()
        self.operator_id: str | None = None
        self.validators: dict[str, str] = {}
        self.threshold_k = 0
        self.credit_limit_ntok = 0
        self.burn_reasons: tuple[str, ...] = ()
        self.ledger_id = ""
        self.balances: dict[str, int] = {}
        self.minted_ntok = 0
        self.burned_ntok = 0
        self.readings: dict[int, list] = {}  # seq -> [participant_id, interval, export_wh, claimed_wh]
        self._reading_keys: set[tuple[str, int]] = set()
        self.chains: dict[str, dict] = {}       # main chain: ledger_id -> registration and last record
        self.exchanges: dict[str, int] = {}     # sidechain: exchange_id -> seq of its entry
        self.periodic_burn: dict | None = None  # genesis policy, if any
        self.next_burn_period = 0
        self.burn_due_ms: int | None = None     # end of the next period to burn (None: no policy)
        self._handlers = {"register_key": self._register, "mint": self._mint, "transfer": self._transfer,
                          "burn": self._burn, "register_chain": self._register_chain,
                          "chain_checkpoint": self._chain_checkpoint, "exchange": self._exchange,
                          "periodic_burn": self._periodic_burn}

    # -- dispatch ---------------------------------------------------------------------------
    def apply(self, seq: int, kind: str, signer: str, payload: dict, check_meter_sig: bool = True,
              ts_ms: int | None = None) -> None:
        """Check `payload` against the rules and the current state, then update the state.  `ts_ms`
        (the entry's time) is needed by the periodic-burn rules; without it they are not checked."""
        if kind == "genesis":
            return self._genesis(seq, signer, payload)
        if self.operator_id is None:
            raise LedgerError(f"entry {seq}: ledger has no genesis")
        if self.burn_due_ms is not None and ts_ms is not None:
            if kind == "periodic_burn":
                if ts_ms < self.burn_due_ms:
                    raise LedgerError(f"entry {seq}: periodic burn of period {self.next_burn_period} booked at "
                                      f"ts_ms {ts_ms}, before the period ends at {self.burn_due_ms}")
            elif ts_ms >= self.burn_due_ms:
                raise LedgerError(f"entry {seq}: periodic burn of period {self.next_burn_period} is due "
                                  f"(ts_ms {ts_ms} >= {self.burn_due_ms}); book it first")
        if signer != self.operator_id:
            raise LedgerError(f"entry {seq}: signer {signer!r} is not the operator {self.operator_id!r}")
        if not isinstance(payload, dict):
            raise LedgerError(f"entry {seq}: payload must be a dict")
        if kind == "meter_reading":
            return self._reading(seq, payload, check_meter_sig)
        if kind == "chain_checkpoint":
            return self._chain_checkpoint(seq, payload, check_meter_sig)
        handler = self._handlers.get(kind)
        if handler is None:
            raise LedgerError(f"entry {seq}: unknown kind {kind!r}")
        return handler(seq, payload)

    # -- kinds ------------------------------------------------------------------------------
    def _genesis(self, seq: int, signer: str, p: dict) -> None:
        if seq != 0 or self.operator_id is not None:
            raise LedgerError(f"entry {seq}: genesis only allowed as entry 0")
        op = p.get("operator") or {}
        if op.get("key_id") != signer:
            raise LedgerError("genesis: must be signed by the operator key it declares")
        self.registry.register(signer, "operator", op.get("public_hex", ""), "operator")
        validators = p.get("validators")
        if not isinstance(validators, list) or not validators:
            raise LedgerError("genesis: validators must be a non-empty list")
        for vid, public_hex in validators:
            self.registry.register(vid, "validator", public_hex, vid)
            self.validators[vid] = public_hex
        self.threshold_k = _int(p, "threshold_k", 1)
        if self.threshold_k > len(self.validators):
            raise LedgerError(f"genesis: threshold_k {self.threshold_k} > {len(self.validators)} validators")
        self.credit_limit_ntok = _int(p, "credit_limit_ntok")
        self.burn_reasons = tuple(p.get("burn_reasons") or ())
        self.ledger_id = _str(p, "ledger_id")
        policy = p.get("periodic_burn")
        if policy is not None:
            if not isinstance(policy, dict) or not isinstance(policy.get("exempt", []), list) \
                    or not all(isinstance(a, str) for a in policy.get("exempt", [])):
                raise LedgerError("genesis: periodic_burn must be {start_ts_ms, period_ms, rate_ppm, exempt [...]}")
            _int(policy, "start_ts_ms"), _int(policy, "period_ms", 1)
            if not 1 <= _int(policy, "rate_ppm", 1) <= PPM:
                raise LedgerError(f"genesis: periodic_burn rate_ppm must be 1..{PPM}")
            self.periodic_burn = policy
            self.burn_due_ms = policy["start_ts_ms"] + policy["period_ms"]
        self.operator_id = signer

    def _register(self, seq: int, p: dict) -> None:
        role = _str(p, "role")
        if role not in ("participant", "meter"):
            raise LedgerError(f"entry {seq}: register_key role {role!r} not allowed (participant|meter)")
        try:
            self.registry.register(_str(p, "key_id"), role, _str(p, "public_hex"), _str(p, "owner"))
        except KeyError_ as exc:
            raise LedgerError(f"entry {seq}: {exc}") from None

    def _reading(self, seq: int, p: dict, check_sig: bool) -> None:
        meter, owner = _str(p, "meter_id"), _str(p, "participant_id")
        interval = _int(p, "interval")
        export_wh, _ = _int(p, "export_wh"), _int(p, "import_wh")
        _int(p, "ts_ms")
        try:
            public_hex = self.registry.public_hex(meter, role="meter")
        except KeyError_ as exc:
            raise LedgerError(f"entry {seq}: meter reading refused: {exc}") from None
        if self.registry.owner(meter) != owner:
            raise LedgerError(f"entry {seq}: meter {meter!r} is not registered to {owner!r}")
        if (meter, interval) in self._reading_keys:
            raise LedgerError(f"entry {seq}: duplicate reading of meter {meter!r} interval {interval}")
        if check_sig:
            sig = p.get("meter_sig")
            if not isinstance(sig, str):
                raise LedgerError(f"entry {seq}: meter reading without meter_sig")
            try:
                verify(public_hex, bytes.fromhex(sig), reading_message(p), f"entry {seq} meter {meter!r}")
            except (SignatureError, ValueError) as exc:
                raise LedgerError(f"entry {seq}: meter reading refused: {exc}") from None
        self._reading_keys.add((meter, interval))
        self.readings[seq] = [owner, interval, export_wh, 0]

    def _check_delivery(self, seq: int, p: dict, seller: str, amount: int) -> tuple[list, int]:
        """Check a payment for delivered energy against the seller's reading; claim nothing yet."""
        ref, qty, price = _int(p, "reading_seq"), _int(p, "qty_wh", 1), _int(p, "price_uusd_per_kwh")
        reading = self.readings.get(ref)
        if reading is None:
            raise LedgerError(f"entry {seq}: reading_seq {ref} is not a meter reading")
        if reading[0] != seller:
            raise LedgerError(f"entry {seq}: reading {ref} belongs to {reading[0]!r}, not seller {seller!r}")
        if reading[3] + qty > reading[2]:
            raise LedgerError(f"entry {seq}: delivery {qty} Wh exceeds verified export "
                              f"({reading[2]} Wh, {reading[3]} Wh already paid) of reading {ref}")
        if amount != qty * price:
            raise LedgerError(f"entry {seq}: amount_ntok {amount} != qty_wh {qty} x price {price}")
        return reading, qty

    def _check_debit(self, seq: int, account: str, amount: int) -> int:
        new = self.balances.get(account, 0) - amount
        if new < -self.credit_limit_ntok:
            raise LedgerError(f"entry {seq}: balance of {account!r} would be {new} ntok, below credit limit")
        return new

    # every handler checks everything first and mutates the state only after all checks passed
    def _mint(self, seq: int, p: dict) -> None:
        account, amount = _str(p, "account"), _int(p, "amount_ntok", 1)
        if p.get("reason") != "delivery":
            raise LedgerError(f"entry {seq}: mint only on verified delivery (reason 'delivery')")
        reading, qty = self._check_delivery(seq, p, account, amount)
        reading[3] += qty
        self.balances[account] = self.balances.get(account, 0) + amount
        self.minted_ntok += amount

    def _transfer(self, seq: int, p: dict) -> None:
        # the checks of _str/_int inline for the common exact types (the helpers name any failure)
        get = p.get
        src, dst, amount, reason = get("from"), get("to"), get("amount_ntok"), get("reason")
        if not (type(src) is str and src and type(dst) is str and dst and type(reason) is str and reason
                and type(amount) is int and amount >= 1):
            src, dst, amount = _str(p, "from"), _str(p, "to"), _int(p, "amount_ntok", 1)
            reason = _str(p, "reason")
        if src == dst:
            raise LedgerError(f"entry {seq}: transfer from {src!r} to itself")
        claim = self._check_delivery(seq, p, dst, amount) if reason == "trade" else None
        new = self.balances.get(src, 0) - amount
        if new < -self.credit_limit_ntok:
            new = self._check_debit(seq, src, amount)  # raises, naming the account
        if claim is not None:
            claim[0][3] += claim[1]
        self.balances[src] = new
        self.balances[dst] = self.balances.get(dst, 0) + amount

    def _burn(self, seq: int, p: dict) -> None:
        account, amount, reason = _str(p, "account"), _int(p, "amount_ntok", 1), _str(p, "reason")
        if reason not in self.burn_reasons:
            raise LedgerError(f"entry {seq}: burn reason {reason!r} not in policy {self.burn_reasons}")
        self.balances[account] = self._check_debit(seq, account, amount)
        self.burned_ntok += amount

    # -- sidechains (main-chain records) and exchanges between sidechains -------------------
    def _register_chain(self, seq: int, p: dict) -> None:
        chain = _str(p, "ledger_id")
        if chain in self.chains:
            raise LedgerError(f"entry {seq}: chain {chain!r} is already registered")
        validators = p.get("validators")
        if not isinstance(validators, list) or not validators:
            raise LedgerError(f"entry {seq}: chain {chain!r}: validators must be a non-empty list")
        registry = KeyRegistry()
        try:
            registry.register("operator", "operator", _str(p, "operator_public_hex"))
            keys = {}
            for vid, public_hex in validators:
                registry.register(vid, "validator", public_hex)
                keys[vid] = public_hex
        except (KeyError_, TypeError, ValueError) as exc:
            raise LedgerError(f"entry {seq}: chain {chain!r}: {exc}") from None
        k = _int(p, "threshold_k", 1)
        if k > len(keys):
            raise LedgerError(f"entry {seq}: chain {chain!r}: threshold_k {k} > {len(keys)} validators")
        self.chains[chain] = {"validators": keys, "threshold_k": k, "operator_public_hex": p["operator_public_hex"],
                              "period": -1, "last_seq": -1, "statement_hash": "00" * 32, "records": []}

    def chain_checkpoint_problem(self, p: dict) -> tuple[dict, dict, list] | str:
        """(chain, statement, signatures) of a main-chain record if it follows the chain's last one."""
        chain = self.chains.get(p.get("ledger_id"))
        if chain is None:
            return f"chain {p.get('ledger_id')!r} is not registered"
        text, sigs = p.get("statement"), p.get("signatures")
        if not isinstance(text, str) or not isinstance(sigs, list):
            return "statement must be text and signatures a list"
        try:
            st = canonical.decode(text.encode("ascii"))
            first, last, period = st["first_seq"], st["last_seq"], st["period"]
        except (ValueError, KeyError, TypeError, UnicodeEncodeError):
            return "statement is not a checkpoint statement"
        if st.get("ledger_id") != p["ledger_id"]:
            return f"statement of ledger {st.get('ledger_id')!r} recorded for chain {p['ledger_id']!r}"
        if not isinstance(period, int) or period <= chain["period"]:
            return f"period {period} does not follow the last recorded period {chain['period']}"
        if first != chain["last_seq"] + 1 or not isinstance(last, int) or last < first:
            return f"covers {first}..{last}, expected to start at {chain['last_seq'] + 1}"
        if st.get("prev_checkpoint") != chain["statement_hash"]:
            return "prev_checkpoint does not link to the last recorded checkpoint of the chain"
        ids = [s[0] if isinstance(s, list) and len(s) == 2 else None for s in sigs]
        if None in ids or len(set(ids)) != len(ids) or not set(ids) <= set(chain["validators"]):
            return "signatures must be [validator_id, sig_hex] pairs of distinct validators of the chain"
        if len(ids) < chain["threshold_k"]:
            return f"{len(ids)} validator signatures, the chain needs {chain['threshold_k']}"
        return chain, st, sigs

    def _chain_checkpoint(self, seq: int, p: dict, check_sigs: bool = True) -> None:
        found = self.chain_checkpoint_problem(p)
        if isinstance(found, str):
            raise LedgerError(f"entry {seq}: chain checkpoint refused: {found}")
        chain, st, sigs = found
        if check_sigs:
            message = p["statement"].encode("ascii")
            for vid, sig in sigs:
                try:
                    verify(chain["validators"][vid], bytes.fromhex(sig), message, f"validator {vid!r}")
                except (SignatureError, ValueError) as exc:
                    raise LedgerError(f"entry {seq}: chain checkpoint refused: {exc}") from None
        chain.update(period=st["period"], last_seq=st["last_seq"],
                     statement_hash=hashlib.sha256(p["statement"].encode("ascii")).hexdigest())
        chain["records"].append(seq)

    def _exchange(self, seq: int, p: dict) -> None:
        xid, direction, counter = _str(p, "exchange_id"), _str(p, "direction"), _str(p, "counter_chain")
        account = _str(p, "account")
        qty, price, amount = _int(p, "qty_wh", 1), _int(p, "price_uusd_per_kwh"), _int(p, "amount_ntok", 1)
        if direction not in ("export", "import"):
            raise LedgerError(f"entry {seq}: exchange direction {direction!r} (export|import)")
        if counter == self.ledger_id:
            raise LedgerError(f"entry {seq}: exchange {xid!r} with this chain itself")
        if xid in self.exchanges:
            raise LedgerError(f"entry {seq}: exchange {xid!r} already settled at entry {self.exchanges[xid]} (replay)")
        if amount != qty * price:
            raise LedgerError(f"entry {seq}: amount_ntok {amount} != qty_wh {qty} x price {price}")
        if account.startswith(CLEARING_PREFIX):
            raise LedgerError(f"entry {seq}: exchange account {account!r} is a clearing account")
        clearing = CLEARING_PREFIX + counter
        if direction == "import":
            _int(p, "counter_seq")
            if not isinstance(p.get("counter_hash"), str) or len(p["counter_hash"]) != 64:
                raise LedgerError(f"entry {seq}: import of exchange {xid!r} needs counter_seq and counter_hash")
            self.balances[account] = self._check_debit(seq, account, amount)
            self.balances[clearing] = self.balances.get(clearing, 0) + amount
        else:
            self.balances[account] = self.balances.get(account, 0) + amount
            self.balances[clearing] = self.balances.get(clearing, 0) - amount
        self.exchanges[xid] = seq

    def periodic_burns(self) -> list[list]:
        """The burns the next periodic_burn entry must book: [[account, amount_ntok]...] by account."""
        if self.periodic_burn is None:
            return []
        rate, exempt = self.periodic_burn["rate_ppm"], set(self.periodic_burn.get("exempt", []))
        return [[a, b * rate // PPM] for a, b in sorted(self.balances.items())
                if b > 0 and b * rate >= PPM and a not in exempt and not a.startswith(CLEARING_PREFIX)]

    def _periodic_burn(self, seq: int, p: dict) -> None:
        if self.periodic_burn is None:
            raise LedgerError(f"entry {seq}: periodic burn, but genesis declares no periodic_burn policy")
        period = _int(p, "period")
        if period != self.next_burn_period:
            raise LedgerError(f"entry {seq}: periodic burn of period {period}, expected period {self.next_burn_period}")
        expected = self.periodic_burns()
        if p.get("burns") != expected:
            raise LedgerError(f"entry {seq}: periodic burn of period {period} does not burn exactly "
                              f"{self.periodic_burn['rate_ppm']} ppm of every positive balance")
        for account, amount in expected:
            self.balances[account] -= amount
            self.burned_ntok += amount
        self.next_burn_period += 1
        self.burn_due_ms += self.periodic_burn["period_ms"]

    def conservation_gap_ntok(self) -> int:
        """sum(balances) - (minted - burned); zero when tokens are conserved."""
        return sum(self.balances.values()) - (self.minted_ntok - self.burned_ntok)
