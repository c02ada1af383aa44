"""A tiny stand-in for the Soroban host: storage with rollback, call stack, auth, events, errors.

Contract models call `host.invoke` for cross-contract calls exactly where the real contracts do,
so nested failures propagate and roll back the whole invocation like on the network."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stellar_sdk import Keypair, StrKey, scval
from stellar_sdk import xdr as sx
from stellar_sdk.auth import build_authorization_preimage
from stellar_sdk.exceptions import BadSignatureError

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
                "ExistingValue": sx.SCErrorCode.SCEC_EXISTING_VALUE,
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


def _contract_fn(contract: str, function: str, args: list[sx.SCVal]) -> sx.InvokeContractArgs:
    return sx.InvokeContractArgs(
        contract_address=addresses.sc_address(contract),
        function_name=sx.SCSymbol(function.encode()),
        args=list(args),
    )


@dataclass
class AuthNode:
    contract: str
    function: str
    args: list[sx.SCVal]
    subs: list[AuthNode] = field(default_factory=list)
    address: str = ""  # whose authorization this tree records (set on roots)

    def to_xdr(self) -> sx.SorobanAuthorizedInvocation:
        fn = sx.SorobanAuthorizedFunction(
            sx.SorobanAuthorizedFunctionType.SOROBAN_AUTHORIZED_FUNCTION_TYPE_CONTRACT_FN,
            contract_fn=_contract_fn(self.contract, self.function, self.args),
        )
        return sx.SorobanAuthorizedInvocation(fn, [s.to_xdr() for s in self.subs])


# The network's longest entry TTL (ledgers): a signature may not expire later than
# ledger + MAX_ENTRY_TTL - 1 ("signature expiration is too late").
MAX_ENTRY_TTL = 3_110_400


@dataclass
class AddressAuth:
    """What the host needs to authenticate address credentials as the network does: the
    network passphrase (the preimage's network id), which accounts exist (the signer's account
    must), and the nonces already consumed (each once, kept until its expiration ledger)."""

    passphrase: str
    accounts: Callable[[str], bool]
    nonces: dict[tuple[str, int], int]  # (address, nonce) -> live until ledger


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
        address_auth: AddressAuth | None = None,
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
        self.address_auth = address_auth
        self.used_entries: set[int] = set()  # indexes of address-credential entries matched
        self.consumed_nonces: dict[tuple[str, int], int] = {}  # committed with the storage

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
        """Contracts authorize their own calls; the transaction source with source-account
        credentials; any other account with a signed address-credential entry."""
        frame = self.stack[-1]
        if is_contract_address(address):
            if any(f.contract == address for f in self.stack[:-1]):
                return
            raise HostError("Auth", "InvalidAction", frame.contract, f"{address} did not authorize")
        node = AuthNode(frame.contract, frame.function, frame.args, address=address)
        parent = next(
            (f.auth_nodes[address] for f in reversed(self.stack[:-1]) if address in f.auth_nodes),
            None,
        )
        if parent is None:
            self.recorded_auth.append(node)
        else:
            parent.subs.append(node)
        frame.auth_nodes[address] = node
        if self.auth_entries is None:
            return
        if address == self.source:
            if not self._authorized(frame):
                raise HostError(
                    "Auth",
                    "InvalidAction",
                    frame.contract,
                    f"no source-account authorization entry for {frame.function}",
                )
            return
        if parent is not None:
            return  # a sub-invocation of a tree already matched and authenticated
        self._authenticate_address(address, frame)

    def _authenticate_address(self, address: str, frame: Frame) -> None:
        """Match the call to an address-credential entry and authenticate it, in the host's
        order and with its errors: no entry -> Error(Auth, InvalidAction); a bad signature or
        a missing account -> Error(Auth, InvalidAction); expired -> Error(Auth, InvalidInput);
        a consumed nonce -> Error(Auth, ExistingValue)."""
        wanted = _contract_fn(frame.contract, frame.function, frame.args).to_xdr_bytes()
        for index, entry in enumerate(self.auth_entries or []):
            creds = address_credentials(entry)
            if creds is None or index in self.used_entries:
                continue
            if addresses.strkey(creds.address) != address:
                continue
            fn = entry.root_invocation.function.contract_fn
            if fn is None or fn.to_xdr_bytes() != wanted:
                continue
            self.used_entries.add(index)
            self._verify_entry(address, entry, creds, frame.contract)
            return
        raise HostError(
            "Auth",
            "InvalidAction",
            frame.contract,
            f"Unauthorized function call for address {address}: no matching authorization entry",
        )

    def _verify_entry(
        self,
        address: str,
        entry: sx.SorobanAuthorizationEntry,
        creds: sx.SorobanAddressCredentials,
        contract: str,
    ) -> None:
        auth = self.address_auth
        if auth is None:
            raise HostError("Auth", "InternalError", contract, "address credentials unsupported")
        expiration = creds.signature_expiration_ledger.uint32
        preimage = build_authorization_preimage(entry, expiration, auth.passphrase)
        payload = hashlib.sha256(preimage.to_xdr_bytes()).digest()
        problem = _account_signature_problem(address, creds.signature, payload, auth.accounts)
        if problem is not None:
            raise HostError(
                "Auth",
                "InvalidAction",
                contract,
                f"failed account authentication with error: {problem}",
            )
        if self.ledger_seq > expiration:
            raise HostError(
                "Auth",
                "InvalidInput",
                contract,
                f"signature has expired: ledger {self.ledger_seq}, expiration {expiration}",
            )
        if expiration > self.ledger_seq + MAX_ENTRY_TTL - 1:
            raise HostError("Auth", "InvalidInput", contract, "signature expiration is too late")
        key = (address, creds.nonce.int64)
        if key in auth.nonces or key in self.consumed_nonces:
            raise HostError("Auth", "ExistingValue", contract, "nonce already exists for address")
        self.consumed_nonces[key] = expiration

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
        """As simulation records them: source-account credentials for the source, address
        credentials with a random nonce, expiration 0 and no signature for anyone else."""
        out = []
        for node in self.recorded_auth:
            if node.address == self.source or not node.address:
                creds = sx.SorobanCredentials(
                    sx.SorobanCredentialsType.SOROBAN_CREDENTIALS_SOURCE_ACCOUNT
                )
            else:
                creds = sx.SorobanCredentials(
                    sx.SorobanCredentialsType.SOROBAN_CREDENTIALS_ADDRESS,
                    address=sx.SorobanAddressCredentials(
                        address=addresses.sc_address(node.address),
                        nonce=sx.Int64(secrets.randbelow(2**63)),
                        signature_expiration_ledger=sx.Uint32(0),
                        signature=sx.SCVal(sx.SCValType.SCV_VOID),
                    ),
                )
            out.append(sx.SorobanAuthorizationEntry(creds, node.to_xdr()))
        return out

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
    return StrKey.encode_contract(hashlib.sha256(seed).digest())


def address_credentials(
    entry: sx.SorobanAuthorizationEntry,
) -> sx.SorobanAddressCredentials | None:
    """The address credentials of an entry (legacy ADDRESS or CAP-71's ADDRESS_V2), else None."""
    creds = entry.credentials
    if creds.type == sx.SorobanCredentialsType.SOROBAN_CREDENTIALS_ADDRESS:
        return creds.address
    if creds.type == sx.SorobanCredentialsType.SOROBAN_CREDENTIALS_ADDRESS_V2:
        return creds.address_v2
    return None


def _account_signature_problem(
    address: str, signature: sx.SCVal, payload: bytes, account_exists: Callable[[str], bool]
) -> str | None:
    """Why a classic account's signature vector does not authenticate `payload`, or None.

    The network's account check: a Vec of {public_key: BytesN<32>, signature: BytesN<64>}
    maps, sorted by public key without duplicates, each key a signer of the existing account
    (here: its master key only) with a valid ed25519 signature, weight reaching the
    threshold."""
    if not account_exists(address):
        return f"account {address} does not exist"
    if signature.type != sx.SCValType.SCV_VEC or not signature.vec or not signature.vec.sc_vec:
        return "no signatures"
    master = Keypair.from_public_key(address)
    last: bytes | None = None
    for item in signature.vec.sc_vec:
        fields: dict[str, bytes] = {}
        if item.type != sx.SCValType.SCV_MAP or item.map is None:
            return "signature is not a map"
        for e in item.map.sc_map:
            if e.key.type == sx.SCValType.SCV_SYMBOL and e.val.type == sx.SCValType.SCV_BYTES:
                assert e.key.sym is not None and e.val.bytes is not None
                fields[e.key.sym.sc_symbol.decode()] = e.val.bytes.sc_bytes
        pub, sig = fields.get("public_key"), fields.get("signature")
        if pub is None or sig is None or len(pub) != 32 or len(sig) != 64:
            return "malformed signature"
        if last is not None and pub <= last:
            return "signatures out of order or duplicated"
        last = pub
        if pub != master.raw_public_key():
            return "signer is not a signer of the account"
        try:
            master.verify(payload, sig)
        except BadSignatureError:
            return "invalid ed25519 signature"
    return None
