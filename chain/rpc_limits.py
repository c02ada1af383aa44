"""Request limits of Soroban RPC's getEvents (developers.stellar.org, getEvents): the client stays
within them, and the devnet enforces them so that a client that would fail on a real network
fails in the tests too."""

MAX_EVENT_FILTERS = 5
MAX_CONTRACT_IDS_PER_FILTER = 5
MAX_EVENT_CONTRACTS = MAX_EVENT_FILTERS * MAX_CONTRACT_IDS_PER_FILTER
