"""API tests: real HTTP (uvicorn on a free port) against the real saga stack."""
