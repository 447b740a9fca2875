# The gateway outside Azure Functions: `python -m functions serve` (functions/server.py).
#   docker build -t connector-gateway .
#   docker run --rm -p 8080:8080 --env-file gateway.env connector-gateway
# Settings are the GATEWAY_* environment variables of README.md; WEB_CONCURRENCY sets
# the worker processes (one per core is usual).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOST=0.0.0.0 \
    PORT=8080 \
    WEB_CONCURRENCY=1

WORKDIR /app
# Runtime requirements only (no test, bench or infra tools).
COPY requirements.txt requirements-serve.txt ./
RUN pip install -r requirements-serve.txt

COPY functions/ functions/
RUN useradd --system --uid 10001 --no-create-home gateway
USER 10001

EXPOSE 8080
STOPSIGNAL SIGTERM
CMD ["python", "-m", "functions", "serve"]
