"""Settlement: following the chain for the saga's funding transactions and telling each loan
workflow how its funding ended (watcher.py). `python watcher.py` is its entry point."""
