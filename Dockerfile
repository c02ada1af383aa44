# One image for every Python process of the stack (API, worker, watcher, devnet, init jobs):
# the process is chosen by the compose service's `command`.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# Dependencies first, so a code change does not reinstall them: exactly the runtime lock (every
# transitive version and file hash, `make lock`); the code runs from /app, not as an installed wheel.
COPY requirements-runtime.lock ./
RUN pip install --require-hashes -r requirements-runtime.lock

COPY core ./core
COPY liquidity ./liquidity
COPY reconcile ./reconcile
COPY runtime ./runtime
COPY settlement ./settlement
COPY chain ./chain
COPY channels ./channels
# The devnet is not part of the product wheel, but the image runs it as the embedded chain.
COPY devnet ./devnet
COPY workflows ./workflows
COPY activities ./activities
COPY api ./api
COPY tools ./tools
COPY worker.py watcher.py ./

# Settings come from the environment and from /app/.run/stack.env (written by the init job).
RUN mkdir -p /app/.run && useradd --create-home --uid 10001 app && chown -R app /app
USER app

EXPOSE 8080
ENV API_HOST=0.0.0.0
CMD ["python", "-m", "api"]
