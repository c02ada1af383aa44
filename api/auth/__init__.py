"""Who is calling, and what they may do: API keys for platform clients and operators, SEP-10
(Stellar Web Authentication) session tokens for borrowers' wallets, the bootstrap ADMIN_TOKEN,
and the admission limits (rate, unsigned reservations) that stop one caller squatting a pool.

Only `deps.py` knows FastAPI; the rest is plain Python over Redis and stellar-sdk, so the
`python -m tools.keys` CLI uses the very same key store the API reads."""
