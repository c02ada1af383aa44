"""Operating the system: JSON logs (logs.py), each process's metrics endpoint and Temporal SDK
runtime (exporter.py), and the prometheus-client families of the API and the watcher
(families.py)."""
