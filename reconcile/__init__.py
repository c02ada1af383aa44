"""Reconciliation's domain logic: compare a pool's reservation ledger with the chain and decide
the repairs. Plain async Python over the ledger, the chain client and a `LoanDirectory` protocol;
the Temporal side (the directory over loan workflows, the activity, the workflow, the Schedule)
lives in workflows/ and activities/."""
