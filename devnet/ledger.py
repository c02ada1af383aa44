"""The devnet's chain state and the rules a transaction goes through, in the network's order.

All methods are synchronous and never await, so on one event loop each call is atomic: a ledger
close applies its queued transactions in order without interleaving with submissions."""

from __future__ import annotations

import base64
import bisect
import hashlib
import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from stellar_sdk import Address, Keypair, TransactionEnvelope, scval
from stellar_sdk import xdr as sx

from chain.envelope import Envelope, decode_envelope
from chain.rpc_limits import MAX_CONTRACT_IDS_PER_FILTER, MAX_EVENT_FILTERS
from devnet import addresses, xdrgen
from devnet.contracts import REGISTRY
from devnet.host import (
    INSTANCE_KEYS,
    AddressAuth,
    Host,
    HostError,
    Slot,
    Storage,
    contract_id_from_seed,
)

TRC = sx.TransactionResultCode
PROTOCOL_VERSION = 23
INSTRUCTIONS_PER_CALL = 1_500_000
FRIENDBOT_XLM = 10_000 * 10_000_000


class RpcError(Exception):
    """A JSON-RPC level error (bad params), as opposed to a transaction-level rejection."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Account:
    balance: int
    seq: int
    last_modified: int


@dataclass
class EventRecord:
    id: str
    order: tuple[int, int]
    ledger: int
    closed_at: str
    contract_id: str
    topics_xdr: list[str]  # base64 XDR, as getEvents serves them and topic filters match them
    value_xdr: str
    tx_hash: str
    tx_index: int

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "contract",
            "ledger": self.ledger,
            "ledgerClosedAt": self.closed_at,
            "contractId": self.contract_id,
            "id": self.id,
            "pagingToken": self.id,
            "operationIndex": 0,
            "transactionIndex": self.tx_index,
            "txHash": self.tx_hash,
            "inSuccessfulContractCall": True,
            "topic": list(self.topics_xdr),
            "value": self.value_xdr,
        }


@dataclass
class TxRecord:
    hash: str
    envelope_xdr: str
    status: str  # PENDING, SUCCESS, FAILED
    submitted_at: int
    ledger: int | None = None
    created_at: int | None = None
    application_order: int | None = None
    result_xdr: str | None = None
    meta_xdr: str | None = None
    diagnostic_events: list[str] = field(default_factory=list)
    contract_events: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DecodedTx:
    """A submitted envelope, decoded once into the raw XDR types, with what the checks read."""

    envelope: Envelope
    xdr: str  # the envelope as getTransaction hands it back
    hash: str  # hex, network-specific
    source: str  # G... account of the transaction source (a muxed source's base account)

    @property
    def tx(self) -> sx.Transaction:
        return self.envelope.tx


@dataclass
class Pending:
    record: TxRecord
    tx: DecodedTx


def _sdk_reads_unchanged(tx: sx.Transaction) -> bool:
    """True when the SDK's `TransactionEnvelope` would read this transaction as it is: accept it,
    and re-encode it to the same bytes (so the same hash and stored envelope).

    That class's extra checks (operation bodies, preconditions) are part of what the devnet
    refuses, but they only concern what the saga's transactions never carry, so those skip the
    (costly) SDK decode: one InvokeHostFunction operation, and no preconditions but well-ordered
    time bounds."""
    ops = tx.operations
    if len(ops) != 1 or ops[0].body.type != sx.OperationType.INVOKE_HOST_FUNCTION:
        return False
    cond = tx.cond
    if cond.type == sx.PreconditionType.PRECOND_NONE:
        return True
    if cond.type != sx.PreconditionType.PRECOND_TIME or cond.time_bounds is None:
        return False
    min_time = cond.time_bounds.min_time.time_point.uint64
    max_time = cond.time_bounds.max_time.time_point.uint64
    return not 0 < max_time < min_time


def _time_bounds(tx: sx.Transaction) -> tuple[int, int] | None:
    """(min_time, max_time) of the transaction's time bounds, None without any."""
    cond = tx.cond
    if cond.type == sx.PreconditionType.PRECOND_TIME:
        bounds = cond.time_bounds
    elif cond.type == sx.PreconditionType.PRECOND_V2 and cond.v2 is not None:
        bounds = cond.v2.time_bounds
    else:
        bounds = None
    if bounds is None:
        return None
    return bounds.min_time.time_point.uint64, bounds.max_time.time_point.uint64


def _b64(xdr: bytes) -> str:
    """Base64 text of XDR bytes, as `to_xdr()` gives it."""
    return base64.b64encode(xdr).decode()


def toid(ledger: int, tx_order: int, op_index: int) -> int:
    return (ledger << 32) | (tx_order << 12) | op_index


def event_id(ledger: int, tx_order: int, index: int) -> tuple[str, tuple[int, int]]:
    t = toid(ledger, tx_order, 1)
    return f"{t:019d}-{index:010d}", (t, index)


def parse_cursor(cursor: str) -> tuple[int, int]:
    try:
        left, _, right = cursor.partition("-")
        return int(left), int(right or 0)
    except ValueError as exc:
        raise RpcError(-32602, f"invalid cursor {cursor!r}") from exc


# Soroban RPC's default history retention today: 120 960 ledgers, about 7 days of 5-second
# ledgers (it was 17 280, one day, before).
DEFAULT_RETENTION_LEDGERS = 120_960


class Chain:
    def __init__(
        self,
        passphrase: str,
        *,
        base_fee: int = 100,
        retention_ledgers: int = DEFAULT_RETENTION_LEDGERS,
        default_reputation: int = 0,
        vendors_active_by_default: bool = False,
    ) -> None:
        """`retention_ledgers`: like Soroban RPC, events and transaction results are served
        for the most recent ledgers only; older ones are forgotten (getEvents refuses a
        startLedger before them, getTransaction answers NOT_FOUND).

        `default_reputation` / `vendors_active_by_default`: what the reputation store and the
        vendor registry answer for an account nobody registered. StepFi's contracts answer 0 and
        inactive (the defaults); a permissive devnet serves test suites that exercise other
        things with random accounts."""
        if retention_ledgers < 1:
            raise ValueError("retention_ledgers must be at least 1")
        self.passphrase = passphrase
        self.base_fee = base_fee
        self.retention = retention_ledgers
        self.accounts: dict[str, Account] = {}
        self.data: dict[Slot, Any] = {}  # committed contract storage
        self.modified: dict[Slot, int] = {}
        self.kinds: dict[str, str] = {}
        self.txs: dict[str, TxRecord] = {}
        self.queue: list[Pending] = []
        self.events: list[EventRecord] = []
        self.latest = 1
        self.close_time = int(time.time())
        self.ledger_hash = hashlib.sha256(f"{passphrase}:1".encode()).digest()
        self.prev_hash = bytes(32)
        self._deploy_nonce = 0
        self.genesis_time = self.close_time
        self._close_times: dict[int, int] = {1: self.close_time}
        self._applied: deque[tuple[int, str]] = deque()  # (ledger, tx hash), oldest first
        # Consumed address-credential nonces, (address, nonce) -> live until ledger: the
        # temporary entries the host writes, dropped once they expire.
        self.nonces: dict[tuple[str, int], int] = {}
        # Devnet-only: the next N sendTransaction calls answer TRY_AGAIN_LATER.
        self.try_again_later = 0
        # One vendor registry and one reputation store per devnet, shared by every creditline.
        self.vendor_registry = self._new_contract(
            "vendor_registry", {"DefaultActive": vendors_active_by_default}
        )
        self.reputation = self._new_contract("reputation", {"DefaultScore": default_reputation})

    # -- views ---------------------------------------------------------------------------------
    def header_xdr(self) -> str:
        return xdrgen.ledger_header_xdr(self.latest, self.close_time, self.prev_hash, self.base_fee)

    def latest_info(self) -> dict[str, Any]:
        return {
            "id": self.ledger_hash.hex(),
            "protocolVersion": PROTOCOL_VERSION,
            "sequence": self.latest,
            "closeTime": str(self.close_time),
            "headerXdr": self.header_xdr(),
            "metadataXdr": "",
        }

    @property
    def oldest(self) -> int:
        """The oldest ledger whose events and transactions are still served."""
        return max(1, self.latest - self.retention + 1)

    def window(self) -> dict[str, Any]:
        return {
            "latestLedger": self.latest,
            "latestLedgerCloseTime": str(self.close_time),
            "oldestLedger": self.oldest,
            "oldestLedgerCloseTime": str(self._close_times.get(self.oldest, self.genesis_time)),
        }

    # -- devnet admin ------------------------------------------------------------------------------
    def fund(self, account: str, xlm: int, token_id: str | None, token_amount: int) -> None:
        """Friendbot: create (or top up) an account; optionally mint the pool token to it."""
        try:
            Keypair.from_public_key(account)
        except Exception as exc:
            raise RpcError(-32602, f"invalid account id {account!r}") from exc
        acct = self.accounts.get(account)
        if acct is None:
            self.accounts[account] = Account(xlm, self.latest << 32, self.latest)
        else:
            acct.balance += xlm
            acct.last_modified = self.latest
        if token_id is not None and token_amount:
            if self.kinds.get(token_id) != "token":
                raise RpcError(-32602, f"{token_id} is not a token contract")
            slot = (token_id, ("Balance", account))
            self.data[slot] = self.data.get(slot, 0) + token_amount
            self.modified[slot] = self.latest

    def _new_contract(self, kind: str, storage: dict[str, Any]) -> str:
        self._deploy_nonce += 1
        cid = contract_id_from_seed(
            f"{self.passphrase}|{kind}|{self._deploy_nonce}|{time.time_ns()}".encode()
        )
        self.kinds[cid] = kind
        for name, value in storage.items():
            self.data[(cid, (name,))] = value
            self.modified[(cid, (name,))] = self.latest
        return cid

    def set_vendor(self, vendor: str, active: bool) -> None:
        """Devnet-only: the vendor registry's admin approves (active) or suspends a vendor."""
        self._account_id(vendor, "vendor")
        self._put(self.vendor_registry, ("Vendor", vendor), bool(active))

    def bump_sequence(self, account: str, sequence: int) -> None:
        """Devnet-only: move an account's sequence number forward, as a BumpSequence operation
        from another holder of its key would (the devnet applies only contract calls)."""
        acct = self.accounts.get(account)
        if acct is None:
            raise RpcError(-32602, f"account {account} does not exist")
        if sequence <= acct.seq:
            raise RpcError(-32602, f"sequence must be above the current {acct.seq}")
        acct.seq = sequence
        acct.last_modified = self.latest

    def set_reputation(self, user: str, score: int) -> None:
        """Devnet-only: the reputation contract's updater sets a user's score (0-100)."""
        from devnet.contracts import REPUTATION_MAX_SCORE

        self._account_id(user, "user")
        if not 0 <= score <= REPUTATION_MAX_SCORE:
            raise RpcError(-32602, f"score must be between 0 and {REPUTATION_MAX_SCORE}")
        self._put(self.reputation, ("Score", user), score)

    @staticmethod
    def _account_id(value: Any, name: str) -> None:
        try:
            Address(value)
        except Exception as exc:
            raise RpcError(-32602, f"invalid {name} address {value!r}") from exc

    def _put(self, contract: str, key: tuple[Any, ...], value: Any) -> None:
        self.data[(contract, key)] = value
        self.modified[(contract, key)] = self.latest

    def deploy_pool(
        self,
        admin: str,
        min_guarantee_bps: int | None = None,
        *,
        vendor_registry: str | bool = True,
        credit_limit_unit: int | None = None,
        min_reputation: int | None = None,
    ) -> dict[str, str]:
        """Deploy and initialize token + pool + creditline, the creditline registered in the pool
        (what the admin's deploy/initialize/set_creditline transactions do on a network).

        `vendor_registry`: True links the devnet's registry, False none (create_loan then
        fails #16 InvalidVendor), a contract id that one (a non-registry fails #17)."""
        if admin not in self.accounts:
            raise RpcError(-32602, f"admin account {admin} does not exist (fund it first)")
        token = self._new_contract(
            "token", {"Admin": admin, "Name": "Devnet USD", "Symbol": "USDC", "Decimals": 7}
        )
        pool = self._new_contract(
            "pool",
            {
                "Admin": admin,
                "Token": token,
                "TotalLiquidity": 0,
                "LockedLiquidity": 0,
                "TotalShares": 0,
            },
        )
        cl_storage: dict[str, Any] = {
            "Admin": admin,
            "Pool": pool,
            "Token": token,
            "LoanCounter": 0,
        }
        if min_guarantee_bps is not None:
            cl_storage["MinGuaranteeBps"] = min_guarantee_bps
        if vendor_registry is True:
            cl_storage["VendorRegistry"] = self.vendor_registry
        elif isinstance(vendor_registry, str):
            cl_storage["VendorRegistry"] = vendor_registry
        cl_storage["Reputation"] = self.reputation
        if credit_limit_unit is not None:
            cl_storage["CreditLimitUnit"] = credit_limit_unit
        if min_reputation is not None:
            cl_storage["MinReputation"] = min_reputation
        creditline = self._new_contract("creditline", cl_storage)
        self.data[(pool, ("CreditLine",))] = creditline
        return {
            "tokenId": token,
            "poolId": pool,
            "creditlineId": creditline,
            "vendorRegistryId": self.vendor_registry,
            "reputationId": self.reputation,
        }

    # -- envelope helpers ------------------------------------------------------------------------
    def _decode(self, xdr: Any) -> DecodedTx:
        """Decode with the raw XDR layer: the SDK's `TransactionEnvelope` converts every address
        to a strkey and round-trips the footprint, which cost more than the rest of a
        submission. What the raw decoder does not take, or what the SDK class would check
        further, still goes through the SDK class, so its refusals and messages are unchanged."""
        if not isinstance(xdr, str) or not xdr:
            raise RpcError(-32602, "transaction: expected a base64 TransactionEnvelope")
        try:
            envelope = decode_envelope(xdr)
        except ValueError:
            return self._decode_via_sdk(xdr)
        if not _sdk_reads_unchanged(envelope.tx):
            return self._decode_via_sdk(xdr)
        return self._decoded(envelope, xdr)

    def _sdk_envelope(self, xdr: str) -> TransactionEnvelope:
        try:
            return TransactionEnvelope.from_xdr(xdr, self.passphrase)
        except Exception as exc:
            raise RpcError(-32602, f"invalid transaction envelope: {exc}") from exc

    def _decode_via_sdk(self, xdr: str) -> DecodedTx:
        """Envelopes of another shape (a v0 envelope, base64 with line breaks, other operations
        or preconditions): refused, hashed and stored as the SDK class decodes and re-encodes
        them, which is what the devnet always did."""
        env = self._sdk_envelope(xdr)
        return self._decoded(
            decode_envelope(env.to_transaction_envelope_v1().to_xdr()), env.to_xdr()
        )

    def _decoded(self, envelope: Envelope, xdr: str) -> DecodedTx:
        source = addresses.muxed_account_id(envelope.tx.source_account)
        return DecodedTx(envelope, xdr, envelope.hash(self.passphrase).hex(), source)

    @staticmethod
    def _invocation(tx: sx.Transaction) -> tuple[sx.InvokeHostFunctionOp, sx.InvokeContractArgs]:
        ops = tx.operations
        body = ops[0].body if len(ops) == 1 else None
        if body is None or body.type != sx.OperationType.INVOKE_HOST_FUNCTION:
            raise RpcError(-32602, "exactly one InvokeHostFunction operation is supported")
        op = body.invoke_host_function_op
        assert op is not None
        hf = op.host_function
        if (
            hf.type != sx.HostFunctionType.HOST_FUNCTION_TYPE_INVOKE_CONTRACT
            or not hf.invoke_contract
        ):
            raise RpcError(-32602, "only contract invocations are modeled (no uploads/deploys)")
        return op, hf.invoke_contract

    def _run(
        self, decoded: DecodedTx, *, record: bool, timestamp: int, ledger_seq: int
    ) -> tuple[Host, sx.SCVal | None, HostError | None]:
        op, args = self._invocation(decoded.tx)
        storage = Storage(self.data)
        # Simulation records auth when the transaction carries none, and enforces the entries
        # it carries otherwise (Soroban RPC's default auth mode); apply always enforces.
        host = Host(
            storage,
            self.kinds,
            REGISTRY,
            source=decoded.source,
            ledger_seq=ledger_seq,
            timestamp=timestamp,
            auth_entries=None if record and not op.auth else list(op.auth),
            address_auth=AddressAuth(self.passphrase, self.accounts.__contains__, self.nonces),
        )
        contract = addresses.strkey(args.contract_address)
        try:
            value = host.invoke(contract, args.function_name.sc_symbol.decode(), list(args.args))
        except HostError as err:
            return host, None, err
        return host, value, None

    # -- simulateTransaction ---------------------------------------------------------------------
    def simulate(self, xdr: Any) -> dict[str, Any]:
        decoded = self._decode(xdr)
        self._invocation(decoded.tx)
        base = {"latestLedger": self.latest}
        host, value, err = self._run(
            decoded, record=True, timestamp=int(time.time()), ledger_seq=self.latest + 1
        )
        if err is not None:
            diag = xdrgen.error_diagnostic(err).to_xdr()
            return {**base, "error": xdrgen.host_error_text(err), "events": [diag]}
        assert value is not None
        rw_slots = host.storage.written
        ro_slots = host.storage.read - rw_slots
        read_write = self._keys(rw_slots)
        rw_set = set(read_write)
        read_only = [k for k in self._keys(ro_slots, host.contracts_touched) if k not in rw_set]
        instructions = INSTRUCTIONS_PER_CALL * max(1, len(host.contracts_touched))
        read_bytes = 200 * (len(read_only) + len(read_write))
        write_bytes = 200 * len(read_write)
        fee = xdrgen.resource_fee(
            len(read_only) + len(read_write), instructions, read_bytes, write_bytes
        )
        data = xdrgen.soroban_data_xdr(
            read_only, read_write, instructions, read_bytes, write_bytes, fee
        )
        return {
            **base,
            "transactionData": _b64(data),
            "minResourceFee": str(fee),
            "results": [
                {"auth": [a.to_xdr() for a in host.recorded_auth_entries()], "xdr": value.to_xdr()}
            ],
            "events": [],
            "cost": {"cpuInsns": str(instructions), "memBytes": str(read_bytes + write_bytes)},
        }

    @staticmethod
    def _keys(slots: set[Slot], contracts: list[str] | None = None) -> list[bytes]:
        """The ledger keys (XDR) of these slots and contract instances, each once, in order."""
        seen: dict[bytes, None] = {}
        for cid in contracts or []:
            seen[xdrgen.instance_ledger_key_xdr(cid)] = None
        for cid, skey in sorted(slots, key=repr):
            seen.setdefault(xdrgen.slot_ledger_key_xdr(cid, skey))
        return list(seen)

    # -- sendTransaction -------------------------------------------------------------------------
    def _error(self, tx_hash: str, code: TRC, fee: int = 0) -> dict[str, Any]:
        return {
            "status": "ERROR",
            "hash": tx_hash,
            "errorResultXdr": xdrgen.tx_result(code, fee).to_xdr(),
            "latestLedger": self.latest,
            "latestLedgerCloseTime": str(self.close_time),
        }

    def _signed_by_source(self, decoded: DecodedTx) -> bool:
        return decoded.envelope.signed_by(decoded.source, self.passphrase)

    def _fee_ok(self, tx: sx.Transaction) -> bool:
        data = tx.ext.soroban_data if tx.ext.v == 1 else None
        if data is None:
            return False
        declared = data.resource_fee.int64
        if declared < xdrgen.min_resource_fee(data.resources):
            return False
        return tx.fee.uint32 >= self.base_fee * len(tx.operations) + declared

    def submit(self, xdr: Any) -> dict[str, Any]:
        decoded = self._decode(xdr)
        tx_hash = decoded.hash
        if any(p.record.hash == tx_hash for p in self.queue):
            return {
                "status": "DUPLICATE",
                "hash": tx_hash,
                "latestLedger": self.latest,
                "latestLedgerCloseTime": str(self.close_time),
            }
        if self.try_again_later > 0:
            self.try_again_later -= 1
            return {
                "status": "TRY_AGAIN_LATER",
                "hash": tx_hash,
                "latestLedger": self.latest,
                "latestLedgerCloseTime": str(self.close_time),
            }
        tx = decoded.tx
        source = decoded.source
        account = self.accounts.get(source)
        if account is None:
            return self._error(tx_hash, TRC.txNO_ACCOUNT)
        if not self._signed_by_source(decoded):
            return self._error(tx_hash, TRC.txBAD_AUTH)
        queued = sum(1 for p in self.queue if p.tx.source == source)
        if tx.seq_num.sequence_number.int64 != account.seq + 1 + queued:
            return self._error(tx_hash, TRC.txBAD_SEQ)
        now = int(time.time())
        bounds = _time_bounds(tx)
        if bounds is not None:
            min_time, max_time = bounds
            if max_time and now > max_time:
                return self._error(tx_hash, TRC.txTOO_LATE)
            if min_time and now < min_time:
                return self._error(tx_hash, TRC.txTOO_EARLY)
        if not self._fee_ok(tx):
            return self._error(tx_hash, TRC.txINSUFFICIENT_FEE)
        if account.balance < tx.fee.uint32:
            return self._error(tx_hash, TRC.txINSUFFICIENT_BALANCE)
        try:
            self._invocation(tx)
        except RpcError:
            return self._error(tx_hash, TRC.txMALFORMED)
        record = TxRecord(tx_hash, decoded.xdr, "PENDING", now)
        self.queue.append(Pending(record, decoded))
        return {
            "status": "PENDING",
            "hash": tx_hash,
            "latestLedger": self.latest,
            "latestLedgerCloseTime": str(self.close_time),
        }

    # -- ledger close ----------------------------------------------------------------------------
    def close_ledger(self) -> int:
        """Close the next ledger: apply the queued transactions in submission order."""
        seq = self.latest + 1
        close_time = max(self.close_time, int(time.time()))
        closed_at = datetime.fromtimestamp(close_time, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        queue, self.queue = self.queue, []
        order = 0
        for pending in queue:
            order += 1
            self._apply(pending, seq, close_time, closed_at, order)
        self.prev_hash = self.ledger_hash
        self.ledger_hash = hashlib.sha256(self.prev_hash + seq.to_bytes(8, "big")).digest()
        self.latest, self.close_time = seq, close_time
        self._close_times[seq] = close_time
        self._forget_history()
        expired = [k for k, live_until in self.nonces.items() if live_until < seq]
        for key in expired:
            del self.nonces[key]
        return seq

    def _forget_history(self) -> None:
        """Drop what falls out of the retention window (events are kept in ledger order)."""
        oldest = self.oldest
        cut = bisect.bisect_left(self.events, oldest, key=lambda ev: ev.ledger)
        del self.events[:cut]
        while self._applied and self._applied[0][0] < oldest:
            self.txs.pop(self._applied.popleft()[1], None)
        self._close_times.pop(oldest - 1, None)  # ledgers close one at a time

    def _finish(
        self,
        rec: TxRecord,
        seq: int,
        close_time: int,
        order: int,
        status: str,
        result: sx.TransactionResult,
        meta: bytes,
        diagnostics: list[bytes],
    ) -> None:
        rec.status, rec.ledger, rec.created_at, rec.application_order = (
            status,
            seq,
            close_time,
            order,
        )
        rec.result_xdr, rec.meta_xdr = result.to_xdr(), _b64(meta)
        rec.diagnostic_events = [_b64(d) for d in diagnostics]
        self.txs[rec.hash] = rec
        self._applied.append((seq, rec.hash))

    def _apply(
        self, pending: Pending, seq: int, close_time: int, closed_at: str, order: int
    ) -> None:
        rec, decoded = pending.record, pending.tx
        tx = decoded.tx
        account = self.accounts[decoded.source]
        sequence = tx.seq_num.sequence_number.int64
        # checks repeated at apply time, against the closing ledger; a failure here charges
        # nothing and consumes no sequence number
        min_time, max_time = _time_bounds(tx) or (0, 0)
        stale: Any = None
        if sequence != account.seq + 1:
            stale = TRC.txBAD_SEQ
        elif max_time and close_time > max_time:
            stale = TRC.txTOO_LATE
        elif min_time and close_time < min_time:
            stale = TRC.txTOO_EARLY
        if stale is not None:
            self._finish(
                rec,
                seq,
                close_time,
                order,
                "FAILED",
                xdrgen.tx_result(stale, 0),
                xdrgen.tx_meta_xdr([], None, []),
                [],
            )
            return
        # fee is charged and the sequence consumed whatever the contract does
        fee = tx.fee.uint32
        account.balance -= fee
        account.seq = sequence
        account.last_modified = seq
        host, value, err = self._run(decoded, record=False, timestamp=close_time, ledger_seq=seq)
        if err is not None:
            diags = [xdrgen.error_diagnostic(err).to_xdr_bytes()]
            self._finish(
                rec,
                seq,
                close_time,
                order,
                "FAILED",
                xdrgen.tx_result(TRC.txFAILED, fee, trapped=True),
                xdrgen.tx_meta_xdr([], None, diags),
                diags,
            )
            return
        assert value is not None
        for slot in host.storage.overlay:
            self.modified[slot] = seq
        host.storage.commit()
        self.nonces.update(host.consumed_nonces)
        value_xdr = value.to_xdr_bytes()
        result_hash = hashlib.sha256(value_xdr).digest()
        events = [xdrgen.pack_event(e) for e in host.events]
        self._finish(
            rec,
            seq,
            close_time,
            order,
            "SUCCESS",
            xdrgen.tx_result(TRC.txSUCCESS, fee, success_hash=result_hash),
            xdrgen.tx_meta_xdr([e.xdr for e in events], value_xdr, []),
            [],
        )
        rec.contract_events = [_b64(e.xdr) for e in events]
        for index, ev in enumerate(events):
            self._record_event(ev, seq, closed_at, rec.hash, order, index)

    def _record_event(
        self,
        ev: xdrgen.PackedEvent,
        seq: int,
        closed_at: str,
        tx_hash: str,
        order: int,
        index: int,
    ) -> None:
        eid, key = event_id(seq, order, index)
        topics = [_b64(t) for t in ev.topics]
        self.events.append(
            EventRecord(
                eid, key, seq, closed_at, ev.contract_id, topics, _b64(ev.data), tx_hash, order
            )
        )

    # -- getTransaction ----------------------------------------------------------------------------
    def get_transaction(self, tx_hash: Any) -> dict[str, Any]:
        if not isinstance(tx_hash, str) or len(tx_hash) != 64:
            raise RpcError(-32602, "hash: expected a 64-character hex transaction hash")
        base = {"txHash": tx_hash, **self.window()}
        rec = self.txs.get(tx_hash.lower())
        if rec is None:
            return {**base, "status": "NOT_FOUND"}
        return {
            **base,
            "status": rec.status,
            "applicationOrder": rec.application_order,
            "feeBump": False,
            "envelopeXdr": rec.envelope_xdr,
            "resultXdr": rec.result_xdr,
            "resultMetaXdr": rec.meta_xdr,
            "diagnosticEventsXdr": rec.diagnostic_events or None,
            "events": {"contractEventsXdr": [rec.contract_events], "transactionEventsXdr": []},
            "ledger": rec.ledger,
            "createdAt": str(rec.created_at),
        }

    # -- getEvents ---------------------------------------------------------------------------------
    def get_events(self, params: dict[str, Any]) -> dict[str, Any]:
        pagination = params.get("pagination") or {}
        cursor = pagination.get("cursor")
        limit = pagination.get("limit") or 100
        if not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise RpcError(-32602, "limit must be between 1 and 10000")
        start = params.get("startLedger")
        end = params.get("endLedger")
        if cursor:
            if start:
                raise RpcError(-32602, "startLedger and cursor cannot both be set")
            after = parse_cursor(cursor)
        elif start:
            if not isinstance(start, int) or start < self.oldest or start > self.latest:
                raise RpcError(
                    -32600,
                    f"startLedger must be between the oldest ledger: {self.oldest} and the "
                    f"latest ledger: {self.latest}",
                )
            after = (toid(start, 0, 0), -1)
        else:
            raise RpcError(-32602, "either startLedger or cursor must be set")
        filters = params.get("filters") or []
        # The limits of Soroban RPC, so a client that would break on a real network breaks here.
        if len(filters) > MAX_EVENT_FILTERS:
            raise RpcError(-32602, f"maximum {MAX_EVENT_FILTERS} filters per request")
        for flt in filters:
            if len(flt.get("contractIds") or []) > MAX_CONTRACT_IDS_PER_FILTER:
                raise RpcError(
                    -32602, f"maximum {MAX_CONTRACT_IDS_PER_FILTER} contract IDs per filter"
                )
        matched: list[EventRecord] = []
        # Events are kept in (ledger, tx, index) order: start right after `after`, not at 0.
        first = bisect.bisect_right(self.events, after, key=lambda ev: ev.order)
        for ev in itertools.islice(self.events, first, None):
            if end and ev.ledger >= end:
                break
            if filters and not any(self._match(ev, f) for f in filters):
                continue
            matched.append(ev)
            if len(matched) == limit:
                break
        if len(matched) == limit:
            next_cursor = matched[-1].id
        else:
            stop = min(end, self.latest + 1) if end else self.latest + 1
            next_cursor = f"{toid(stop, 0, 0):019d}-{0:010d}"
        return {
            "events": [e.to_json() for e in matched],
            "cursor": next_cursor,
            **self.window(),
        }

    @staticmethod
    def _match(ev: EventRecord, flt: dict[str, Any]) -> bool:
        kind = flt.get("type")
        if kind and kind != "contract":
            return False
        ids = flt.get("contractIds")
        if ids and ev.contract_id not in ids:
            return False
        patterns = flt.get("topics")
        if not patterns:
            return True
        topics = ev.topics_xdr
        for pattern in patterns:
            if pattern and pattern[-1] == "**":
                head = pattern[:-1]
                if len(topics) < len(head):
                    continue
            else:
                head = pattern
                if len(topics) != len(head):
                    continue
            if all(p == "*" or p == t for p, t in zip(head, topics, strict=False)):
                return True
        return False

    # -- getLedgerEntries ------------------------------------------------------------------------
    def get_ledger_entries(self, keys: Any) -> dict[str, Any]:
        if not isinstance(keys, list) or not keys:
            raise RpcError(-32602, "keys: expected a non-empty list of LedgerKey XDR")
        entries = []
        for key_xdr in keys:
            try:
                key = sx.LedgerKey.from_xdr(key_xdr)
            except Exception as exc:
                raise RpcError(-32602, f"invalid ledger key: {exc}") from exc
            found = self._entry(key)
            if found is not None:
                data, modified = found
                entries.append(
                    {
                        "key": key_xdr,
                        "xdr": data.to_xdr(),
                        "lastModifiedLedgerSeq": modified,
                        "liveUntilLedgerSeq": self.latest + 2_000_000,
                    }
                )
        return {"entries": entries, "latestLedger": self.latest}

    def _entry(self, key: sx.LedgerKey) -> tuple[sx.LedgerEntryData, int] | None:
        if key.type == sx.LedgerEntryType.ACCOUNT and key.account is not None:
            ed25519 = key.account.account_id.account_id.ed25519
            assert ed25519 is not None
            account_id = addresses.account_strkey(ed25519.uint256)
            acct = self.accounts.get(account_id)
            if acct is None:
                return None
            return xdrgen.account_entry(account_id, acct.balance, acct.seq), acct.last_modified
        if key.type == sx.LedgerEntryType.CONTRACT_DATA and key.contract_data is not None:
            cid = addresses.strkey(key.contract_data.contract)
            kind = self.kinds.get(cid)
            if kind is None:
                return None
            skey = key.contract_data.key
            if skey.type == sx.SCValType.SCV_LEDGER_KEY_CONTRACT_INSTANCE:
                storage = {
                    k[0]: v for (c, k), v in self.data.items() if c == cid and k[0] in INSTANCE_KEYS
                }
                modified = max(
                    (
                        m
                        for (c, k), m in self.modified.items()
                        if c == cid and k[0] in INSTANCE_KEYS
                    ),
                    default=1,
                )
                return xdrgen.instance_entry(cid, kind, storage), modified
            native = scval.to_native(skey)
            if not isinstance(native, list) or not native:
                return None
            parts = tuple(p.address if isinstance(p, Address) else p for p in native)
            slot = (cid, parts)
            if slot not in self.data:
                return None
            return (
                xdrgen.slot_entry(cid, kind, parts, self.data[slot]),
                self.modified.get(slot, 1),
            )
        return None
