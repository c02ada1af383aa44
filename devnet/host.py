"""A tiny stand-in for the Soroban host: storage with rollback, call stack, auth, events, errors.

Contract models call `host.invoke` for cross-contract calls exactly where the real contracts do,
so nested failures propagate and roll back the whole invocation like on the network."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stellar_sdk import StrKey, scval
from stellar_sdk import xdr as sx

from devnet import addresses

StorageKey = tuple[
    Any, ...
]  # ("TotalLiquidity",) lives in the instance; ("Balance", addr) persistent
Slot = tuple[str, StorageKey]  # (contract id, key)

# Keys stored in the contract instance (config, counters); every other key is a persistent entry.
INSTANCE_KEYS = frozenset(
    {
        "Admin",
        "Token",
        "CreditLine",
        "Pool",
        "TotalLiquidity",
        "LockedLiquidity",
        "TotalShares",
        "LoanCounter",
        "Name",
        "Symbol",
        "Decimals",
        "MinGuaranteeBps",
        "VendorRegistry",
        "Reputation",
        "MinReputation",
        "CreditLimitUnit",
        "DefaultActive",
        "DefaultScore",
    }
)


class HostError(Exception):
    """An `Error(Type, Code)` raised during execution; rendered like the real host renders it."""

    def __init__(self, kind: str, code: int | str, contract: str | None, message: str = "") -> None:
        super().__init__(message or f"Error({kind}, {code})")
        self.kind = kind  # "Contract", "Auth", "Value", "Storage", "WasmVm"
        self.code = code
        self.contract = contract
        self.message = message

    @property
    def rendered(self) -> str:
        code = f"#{self.code}" if isinstance(self.code, int) else self.code
        return f"Error({self.kind}, {code})"

    def to_scval(self) -> sx.SCVal:
        if self.kind == "Contract" and isinstance(self.code, int):
            err = sx.SCError(sx.SCErrorType.SCE_CONTRACT, contract_code=sx.Uint32(self.code))
        else:
            err_type = {
                "Auth": sx.SCErrorType.SCE_AUTH,
                "Value": sx.SCErrorType.SCE_VALUE,
                "Storage": sx.SCErrorType.SCE_STORAGE,
                "WasmVm": sx.SCErrorType.SCE_WASM_VM,
            }.get(self.kind, sx.SCErrorType.SCE_CONTEXT)
            code = {
                "InvalidAction": sx.SCErrorCode.SCEC_INVALID_ACTION,
                "MissingValue": sx.SCErrorCode.SCEC_MISSING_VALUE,
                "UnexpectedType": sx.SCErrorCode.SCEC_UNEXPECTED_TYPE,
                "InvalidInput": sx.SCErrorCode.SCEC_INVALID_INPUT,
            }.get(str(self.code), sx.SCErrorCode.SCEC_INTERNAL_ERROR)
            err = sx.SCError(err_type, code=code)
        return sx.SCVal(sx.SCValType.SCV_ERROR, error=err)


def contract_error(code: int, contract: str, message: str = "") -> HostError:
    return HostError("Contract", code, contract, message)


def is_contract_address(address: str) -> bool:
    return address.startswith("C")


@dataclass
class ContractEventRecord:
    contract_id: str
    topics: list[sx.SCVal]
    data: sx.SCVal


@dataclass
class AuthNode:
    contract: str
    function: str
    args: list[sx.SCVal]
    subs: list[AuthNode] = field(default_factory=list)

    def to_xdr(self) -> sx.SorobanAuthorizedInvocation:
        fn = sx.SorobanAuthorizedFunction(
            sx.SorobanAuthorizedFunctionType.SOROBAN_AUTHORIZED_FUNCTION_TYPE_CONTRACT_FN,
            contract_fn=sx.InvokeContractArgs(
                contract_address=addresses.sc_address(self.contract),
                function_name=sx.SCSymbol(self.function.encode()),
                args=list(self.args),
            ),
        )
        return sx.SorobanAuthorizedInvocation(fn, [s.to_xdr() for s in self.subs])


@dataclass
class Frame:
    contract: str
    function: str
    args: list[sx.SCVal]
    auth_nodes: dict[str, AuthNode] = field(default_factory=dict)


class Storage:
    """Committed contract data plus a write overlay, so a failed invocation leaves no trace."""

    def __init__(self, base: dict[Slot, Any]) -> None:
        self.base = base
        self.overlay: dict[Slot, Any] = {}
        self.read: set[Slot] = set()
        self.written: set[Slot] = set()

    def get(self, contract: str, key: StorageKey, default: Any = None) -> Any:
        slot = (contract, key)
        self.read.add(slot)
        if slot in self.overlay:
            return self.overlay[slot]
        return self.base.get(slot, default)

    def put(self, contract: str, key: StorageKey, value: Any) -> None:
        slot = (contract, key)
        self.written.add(slot)
        self.overlay[slot] = value

    def commit(self) -> None:
        self.base.update(self.overlay)
        self.overlay.clear()


ContractFn = Callable[..., sx.SCVal]


class Host:
    """Executes one invocation. `auth_entries` None means recording mode (simulation)."""

    def __init__(
        self,
        storage: Storage,
        kinds: dict[str, str],
        registry: dict[str, dict[str, ContractFn]],
        *,
        source: str,
        ledger_seq: int,
        timestamp: int,
        auth_entries: list[sx.SorobanAuthorizationEntry] | None,
    ) -> None:
        self.storage = storage
        self.kinds = kinds
        self.registry = registry
        self.source = source
        self.ledger_seq = ledger_seq
        self.timestamp = timestamp
        self.auth_entries = auth_entries
        self.stack: list[Frame] = []
        self.events: list[ContractEventRecord] = []
        self.recorded_auth: list[AuthNode] = []
        self.contracts_touched: list[str] = []

    # -- invocation ---------------------------------------------------------------------------
    def invoke(self, contract: str, function: str, args: list[sx.SCVal]) -> sx.SCVal:
        kind = self.kinds.get(contract)
        if kind is None:
            raise HostError("Storage", "MissingValue", contract, f"contract {contract} not found")
        fn = self.registry[kind].get(function)
        if fn is None:
            raise HostError("WasmVm", "InvalidAction", contract, f"no function {function!r}")
        if contract not in self.contracts_touched:
            self.contracts_touched.append(contract)
        self.stack.append(Frame(contract, function, list(args)))
        try:
            return fn(self, contract, *args)
        except TypeError as exc:  # wrong number of arguments
            raise HostError("WasmVm", "InvalidInput", contract, str(exc)) from exc
        finally:
            self.stack.pop()

    @property
    def current(self) -> str:
        return self.stack[-1].contract

    # -- auth -----------------------------------------------------------------------------------
    def require_auth(self, address: str) -> None:
        """Contracts authorize their own calls; accounts only as the transaction source."""
        frame = self.stack[-1]
        if is_contract_address(address):
            if any(f.contract == address for f in self.stack[:-1]):
                return
            raise HostError("Auth", "InvalidAction", frame.contract, f"{address} did not authorize")
        if address != self.source:
            raise HostError(
                "Auth",
                "InvalidAction",
                frame.contract,
                f"{address} is not the transaction source; address credentials are not modeled",
            )
        node = AuthNode(frame.contract, frame.function, frame.args)
        parent = next(
            (f.auth_nodes[address] for f in reversed(self.stack[:-1]) if address in f.auth_nodes),
            None,
        )
        if parent is None:
            self.recorded_auth.append(node)
        else:
            parent.subs.append(node)
        frame.auth_nodes[address] = node
        if self.auth_entries is not None and not self._authorized(frame):
            raise HostError(
                "Auth",
                "InvalidAction",
                frame.contract,
                f"no source-account authorization entry for {frame.function}",
            )

    def _authorized(self, frame: Frame) -> bool:
        wanted = (frame.contract, frame.function)

        def walk(inv: sx.SorobanAuthorizedInvocation) -> bool:
            fn = inv.function.contract_fn
            if fn is not None:
                addr = addresses.strkey(fn.contract_address)
                if (addr, fn.function_name.sc_symbol.decode()) == wanted:
                    return True
            return any(walk(s) for s in inv.sub_invocations)

        return any(
            e.credentials.type == sx.SorobanCredentialsType.SOROBAN_CREDENTIALS_SOURCE_ACCOUNT
            and walk(e.root_invocation)
            for e in self.auth_entries or []
        )

    def recorded_auth_entries(self) -> list[sx.SorobanAuthorizationEntry]:
        creds = sx.SorobanCredentials(sx.SorobanCredentialsType.SOROBAN_CREDENTIALS_SOURCE_ACCOUNT)
        return [sx.SorobanAuthorizationEntry(creds, n.to_xdr()) for n in self.recorded_auth]

    # -- events ---------------------------------------------------------------------------------
    def emit(self, topics: list[sx.SCVal], data: sx.SCVal) -> None:
        self.events.append(ContractEventRecord(self.current, topics, data))


# -- argument decoding (type errors surface as the host's UnexpectedType) --------------------------
def arg_address(host: Host, val: sx.SCVal) -> str:
    if val.type != sx.SCValType.SCV_ADDRESS:
        raise HostError("Value", "UnexpectedType", host.current, "expected an address")
    assert val.address is not None
    return addresses.strkey(val.address)


def arg_int(host: Host, val: sx.SCVal, kind: sx.SCValType) -> int:
    if val.type != kind:
        raise HostError("Value", "UnexpectedType", host.current, f"expected {kind.name}")
    value = scval.to_native(val)
    assert isinstance(value, int)
    return value


def arg_i128(host: Host, val: sx.SCVal) -> int:
    return arg_int(host, val, sx.SCValType.SCV_I128)


def arg_u64(host: Host, val: sx.SCVal) -> int:
    return arg_int(host, val, sx.SCValType.SCV_U64)


def arg_u32(host: Host, val: sx.SCVal) -> int:
    return arg_int(host, val, sx.SCValType.SCV_U32)


def contract_id_from_seed(seed: bytes) -> str:
    import hashlib

    return StrKey.encode_contract(hashlib.sha256(seed).digest())
