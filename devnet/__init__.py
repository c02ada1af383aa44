"""A local chain process speaking the Soroban RPC protocol, running Python models of StepFi's
LiquidityPool and CreditLine. A test double for a network that is unreachable here: see
devnet/README.md for what it models and what it does not."""
