"""The chain client the saga uses: build the funding transaction, read the pool, submit, follow.

Only `stellar_sdk.SorobanServerAsync` talks to the network, so the same code points at the local
devnet or at testnet by changing `rpc_url` and `network_passphrase`."""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import Awaitable
from typing import Any, TypeVar

from stellar_sdk import (
    Account,
    AiohttpClient,
    Keypair,
    SorobanServerAsync,
    TransactionBuilder,
    scval,
)
from stellar_sdk import xdr as sx
from stellar_sdk.exceptions import (
    AccountNotFoundException,
    BaseRequestError,
    PrepareTransactionException,
    SorobanRpcErrorResponse,
)
from stellar_sdk.soroban_rpc import (
    EventFilter,
    EventFilterType,
    GetEventsRequest,
    GetLedgerEntriesRequest,
    GetTransactionRequest,
    GetTransactionStatus,
    Request,
    Response,
    SendTransactionRequest,
    SendTransactionStatus,
    SimulateTransactionRequest,
)

from chain import decode, sponsored
from chain.envelope import unsigned_envelope_hash
from chain.errors import ChainRefusal, ChainUnavailable
from chain.invocation import Invocation
from chain.rpc_limits import MAX_CONTRACT_IDS_PER_FILTER, MAX_EVENT_CONTRACTS
from chain.types import EventPage, FailureReason, FundingTx, PoolStats, SubmitResult, TxStatus
from core.models import LoanTerms

T = TypeVar("T")

# Simulation of read-only calls needs *a* source account but never its signature or sequence.
DEFAULT_TIMEOUT_S = 10.0

_READER = Keypair.from_raw_ed25519_seed(b"liquidity-saga read-only source!").public_key


# stellar-sdk parametrizes its pydantic JSON-RPC models (`Request[...]`, `Response[Any]`) on every
# call, and pydantic caches a parametrized model only weakly: each time the garbage collector has
# dropped one, the next call builds the model class again (schema and validator: a measurable
# share of the worker's and the watcher's CPU under load, docs/benchmarks.md). Holding the ones
# this client uses keeps pydantic's cache warm for the life of the process.
_RPC_MODELS = (
    Response[Any],
    Request[GetEventsRequest],
    Request[GetLedgerEntriesRequest],
    Request[GetTransactionRequest],
    Request[SendTransactionRequest],
    Request[SimulateTransactionRequest],
)


def loan_args(terms: LoanTerms) -> list[sx.SCVal]:
    """Arguments of CreditLine `create_loan`, typed as the contract declares them."""
    schedule = scval.to_vec(
        [
            scval.to_struct(
                {"amount": scval.to_int128(i.amount), "due_date": scval.to_uint64(i.due_date)}
            )
            for i in terms.repayment_schedule
        ]
    )
    return [
        scval.to_address(terms.borrower),
        scval.to_address(terms.vendor),
        scval.to_int128(terms.total_amount),
        scval.to_int128(terms.guarantee_amount),
        schedule,
        scval.to_uint32(terms.loan_type),
    ]


class ChainClient:
    def __init__(
        self,
        rpc_url: str,
        network_passphrase: str,
        *,
        base_fee: int = 100,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        """`timeout` bounds every RPC call (stellar-sdk's default POST timeout is ~33 s, longer
        than any caller of ours waits); past it the call raises ChainUnavailable."""
        self.rpc_url = rpc_url
        self.network_passphrase = network_passphrase
        self.base_fee = base_fee
        self.timeout = timeout
        self._server = SorobanServerAsync(
            rpc_url, client=AiohttpClient(request_timeout=timeout, post_timeout=timeout)
        )

    async def close(self) -> None:
        await self._server.close()

    async def _call(self, awaitable: Awaitable[T]) -> T:
        """Transport trouble becomes ChainUnavailable; an RPC-level error is a refusal."""
        try:
            # also a hard bound over whatever the HTTP client retries within its own timeout
            return await asyncio.wait_for(awaitable, self.timeout + 1)
        except SorobanRpcErrorResponse as exc:
            if exc.code == -32603:
                raise ChainUnavailable(f"RPC internal error: {exc.message}") from exc
            raise ChainRefusal(
                FailureReason.MALFORMED, f"RPC error {exc.code}: {exc.message}"
            ) from exc
        except (TimeoutError, BaseRequestError, OSError) as exc:
            raise ChainUnavailable(f"RPC {self.rpc_url} unreachable: {exc}") from exc

    async def latest_ledger(self) -> int:
        return (await self._call(self._server.get_latest_ledger())).sequence

    async def history_window(self) -> tuple[int, int]:
        """(oldest, latest): the ledgers whose events and transaction results the RPC still
        serves. Soroban RPC forgets history older than its retention window (120 960 ledgers, about
        7 days, by default)."""
        health = await self._call(self._server.get_health())
        return health.oldest_ledger, health.latest_ledger

    # -- building ------------------------------------------------------------------------------
    async def build_funding_tx(
        self, creditline_id: str, terms: LoanTerms, *, max_time: int
    ) -> FundingTx:
        """The borrower's create_loan transaction, prepared (footprint, auth, resource fee) and
        bounded by `max_time`, so it cannot land after the reservation that backs it expires."""
        invocation = Invocation.build(
            source=terms.borrower,
            base_fee=self.base_fee,
            contract_id=creditline_id,
            function="create_loan",
            args=loan_args(terms),
            max_time=max_time,
        )
        # Simulation ignores the sequence number, so the account is read at the same time: the
        # two round trips overlap instead of adding up in the borrower's time to XDR. The SDK
        # types the argument as an envelope object but sends a str as it is (its first
        # statement), which spares decoding the bytes just to have them encoded again.
        unprepared: Any = base64.b64encode(invocation.unprepared(sequence=0)).decode()
        account, simulation = await asyncio.gather(
            self._call(self._server.load_account(terms.borrower)),
            self._call(self._server.simulate_transaction(unprepared)),
            return_exceptions=True,
        )
        if isinstance(account, AccountNotFoundException):
            raise ChainRefusal(
                FailureReason.NO_ACCOUNT, f"account {terms.borrower} not found"
            ) from account
        if isinstance(account, BaseException):
            raise account
        if isinstance(simulation, BaseException):
            raise simulation
        sequence = account.sequence + 1
        if simulation.error:
            reason, detail = decode.decode_simulation_error(
                simulation.error, creditline_id, "create_loan"
            )
            raise ChainRefusal(reason, detail)
        results = simulation.results
        if simulation.transaction_data is None or simulation.min_resource_fee is None:
            raise ChainUnavailable("simulation returned no transaction data")
        if not results or len(results) != 1:
            raise ChainUnavailable(f"simulation results invalid: {results}")
        try:
            envelope = invocation.prepared(
                sequence=sequence,
                transaction_data=simulation.transaction_data,
                min_resource_fee=simulation.min_resource_fee,
                auth=results[0].auth or [],
            )
        except ValueError as exc:
            raise ChainUnavailable(str(exc)) from exc
        return FundingTx(
            xdr=base64.b64encode(envelope).decode(),
            tx_hash=unsigned_envelope_hash(envelope, self.network_passphrase),
            max_time=max_time,
            source=terms.borrower,
            sequence=sequence,
        )

    # -- sponsored funding (chain/sponsored.py) ------------------------------------------------
    async def offer_sponsored_entry(
        self,
        creditline_id: str,
        terms: LoanTerms,
        *,
        sponsor: str,
        expires_at: int,
        ledger_seconds: float,
    ) -> sponsored.SponsoredOffer:
        """Simulate create_loan with `sponsor` (a channel account) as the source, so recording
        mode records the borrower's address-credential entry, and offer that entry unsigned
        with a fresh random nonce and an expiration ledger that cannot outlive `expires_at`."""
        tx = (
            TransactionBuilder(Account(sponsor, 0), self.network_passphrase, self.base_fee)
            .append_invoke_contract_function_op(creditline_id, "create_loan", loan_args(terms))
            .add_time_bounds(0, expires_at)
            .build()
        )
        simulation, ledger = await asyncio.gather(
            self._call(self._server.simulate_transaction(tx)),
            self._call(self._server.get_latest_ledger()),
        )
        if simulation.error:
            reason, detail = decode.decode_simulation_error(
                simulation.error, creditline_id, "create_loan"
            )
            raise ChainRefusal(reason, detail)
        results = simulation.results
        if not results or len(results) != 1:
            raise ChainUnavailable(f"simulation results invalid: {results}")
        recorded = sponsored.borrower_entry(results[0].auth or [], terms.borrower)
        if recorded is None:
            raise ChainUnavailable("simulation recorded no single address entry for the borrower")
        until = sponsored.valid_until_ledger(
            latest_ledger=ledger.sequence,
            latest_close_time=ledger.close_time,
            expires_at=expires_at,
            ledger_seconds=ledger_seconds,
        )
        if until <= ledger.sequence:
            raise ChainRefusal(
                FailureReason.TOO_LATE, "the reservation ends before another ledger closes"
            )
        offered = sponsored.with_offer_fields(
            recorded, nonce=secrets.randbelow(2**63), valid_until=until
        )
        return sponsored.SponsoredOffer(
            auth_entry=offered.to_xdr(),
            valid_until_ledger=until,
            expires_at=expires_at,
            latest_ledger=ledger.sequence,
        )

    async def assemble_sponsored(
        self,
        *,
        channel: Keypair,
        sequence: int,
        signed_entry: sx.SorobanAuthorizationEntry,
        max_time: int,
    ) -> tuple[str, str]:
        """(signed envelope base64, tx hash hex): the channel's transaction at `sequence`
        carrying the borrower's signed entry, prepared by stellar-sdk (which keeps the given
        auth and simulates it in enforcing mode, so the signature, an expired entry or a
        contract check refuses here, before anything is sent) and signed by the channel."""
        contract, function, args = sponsored.entry_call(signed_entry)
        tx = (
            TransactionBuilder(
                Account(channel.public_key, sequence - 1), self.network_passphrase, self.base_fee
            )
            .append_invoke_contract_function_op(contract, function, args, auth=[signed_entry])
            .add_time_bounds(0, max_time)
            .build()
        )
        try:
            prepared = await self._call(self._server.prepare_transaction(tx))
        except PrepareTransactionException as exc:
            text = exc.simulate_transaction_response.error or str(exc)
            reason, detail = decode.decode_simulation_error(text, contract, function)
            raise ChainRefusal(reason, detail) from exc
        prepared.sign(channel)
        return prepared.to_xdr(), prepared.hash_hex()

    async def account_sequence(self, account: str) -> int:
        """The account's current sequence number (a channel's, after txBAD_SEQ)."""
        try:
            loaded = await self._call(self._server.load_account(account))
        except AccountNotFoundException as exc:
            raise ChainRefusal(FailureReason.NO_ACCOUNT, f"account {account} not found") from exc
        return int(loaded.sequence)

    async def simulate_read(
        self, contract_id: str, function: str, args: list[sx.SCVal] | None = None
    ) -> tuple[Any, int]:
        """Call a read-only contract function through simulation: (native value, latest ledger)."""
        tx = (
            TransactionBuilder(Account(_READER, 0), self.network_passphrase, self.base_fee)
            .append_invoke_contract_function_op(contract_id, function, args or [])
            .set_timeout(0)
            .build()
        )
        resp = await self._call(self._server.simulate_transaction(tx))
        if resp.error:
            reason, detail = decode.decode_simulation_error(resp.error, contract_id, function)
            raise ChainRefusal(reason, detail)
        if not resp.results:
            raise ChainRefusal(FailureReason.UNKNOWN, "simulation returned no result")
        return scval.to_native(resp.results[0].xdr), resp.latest_ledger

    async def pool_stats(self, pool_id: str) -> PoolStats:
        value, ledger = await self.simulate_read(pool_id, "get_pool_stats")
        return PoolStats(**{k: int(v) for k, v in value.items()}, ledger=ledger)

    # -- submitting and following ----------------------------------------------------------------
    async def submit(self, signed_xdr: str) -> SubmitResult:
        """Garbage is refused by the RPC (-32602, a MALFORMED refusal), and the hash is the one
        it answers with: nothing is decoded here."""
        resp = await self._call(self._server.send_transaction(signed_xdr))
        tx_hash = resp.hash
        status = {
            SendTransactionStatus.PENDING: "pending",
            SendTransactionStatus.DUPLICATE: "duplicate",
            SendTransactionStatus.TRY_AGAIN_LATER: "try_again_later",
            SendTransactionStatus.ERROR: "error",
        }[resp.status]
        if resp.status != SendTransactionStatus.ERROR:
            return SubmitResult(status=status, tx_hash=tx_hash)
        reason, detail = FailureReason.UNKNOWN, "no errorResultXdr"
        if resp.error_result_xdr:
            code = decode.result_code(resp.error_result_xdr)
            reason, detail = decode.reason_for_code(code), code.name
        return SubmitResult(status="error", tx_hash=tx_hash, reason=reason, detail=detail)

    async def transaction(self, tx_hash: str) -> TxStatus:
        resp = await self._call(self._server.get_transaction(tx_hash))
        if resp.status == GetTransactionStatus.NOT_FOUND:
            return TxStatus(status="not_found", tx_hash=tx_hash)
        contract, function = (
            decode.invoked_function(resp.envelope_xdr, self.network_passphrase)
            if resp.envelope_xdr
            else (None, None)
        )
        if resp.status == GetTransactionStatus.SUCCESS:
            loan_id = None
            if function == "create_loan":
                value = decode.return_value(resp.result_meta_xdr)
                loan_id = value if isinstance(value, int) else None
            return TxStatus(
                status="success", tx_hash=tx_hash, ledger=resp.ledger, chain_loan_id=loan_id
            )
        reason, detail = FailureReason.UNKNOWN, ""
        if resp.result_xdr:
            code = decode.result_code(resp.result_xdr)
            reason, detail = decode.reason_for_code(code), code.name
            if code == sx.TransactionResultCode.txFAILED:
                diagnostics = resp.diagnostic_events_xdr or decode.meta_diagnostics(
                    resp.result_meta_xdr
                )
                found = decode.error_from_diagnostics(diagnostics)
                if found is not None:
                    kind, err_code, failing = found
                    reason = decode.reason_for_host_error(
                        kind, err_code, failing, contract, function
                    )
                    detail = (
                        f"Error({kind}, #{err_code})"
                        if kind == "Contract"
                        else f"Error({kind}, {err_code})"
                    )
                else:
                    reason = FailureReason.CONTRACT_ERROR
        return TxStatus(
            status="failed", tx_hash=tx_hash, ledger=resp.ledger, reason=reason, detail=detail
        )

    async def events(
        self,
        contract_ids: list[str],
        *,
        start_ledger: int | None = None,
        cursor: str | None = None,
        limit: int = 100,
        names: list[str] | None = None,
    ) -> EventPage:
        """One page of contract events. `cursor` wins over `start_ledger`; with neither, start at
        the latest ledger. Pass the returned cursor back to continue where this page ended."""
        if len(contract_ids) > MAX_EVENT_CONTRACTS:
            raise ValueError(
                f"one getEvents request follows at most {MAX_EVENT_CONTRACTS} contracts, "
                f"got {len(contract_ids)}: split them across requests"
            )
        topics = [[scval.to_symbol(n).to_xdr(), "**"] for n in names] if names else None
        filters = [
            EventFilter(
                event_type=EventFilterType.CONTRACT,
                contract_ids=contract_ids[i : i + MAX_CONTRACT_IDS_PER_FILTER],
                topics=topics,
            )
            for i in range(0, len(contract_ids), MAX_CONTRACT_IDS_PER_FILTER)
        ]
        if cursor is None and start_ledger is None:
            start_ledger = await self.latest_ledger()
        resp = await self._call(
            self._server.get_events(
                start_ledger=None if cursor else start_ledger,
                filters=filters or None,
                cursor=cursor,
                limit=limit,
            )
        )
        return EventPage(
            events=[decode.decode_event(e) for e in resp.events],
            cursor=resp.cursor or (resp.events[-1].id if resp.events else cursor),
            latest_ledger=resp.latest_ledger,
        )
