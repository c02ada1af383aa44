"""The composition root: builds the runtime clients from settings (clients.py), assembles the
Temporal worker from them (worker.py) and wires a process's stop signals (signals.py).

Everything else receives its clients; only the entry points (worker.py, watcher.py, the API's
lifespan), tools, tests and benches call in here, so nothing in the product imports it back."""
