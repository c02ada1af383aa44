"""HTTP routes, one module per resource; they translate HTTP to the saga/ledger/chain and back."""
