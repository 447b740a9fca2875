"""`python -m functions serve`: the production server (functions/server.py says how it
differs from `dev`). Options default to the usual container variables: HOST, PORT,
WEB_CONCURRENCY."""

from __future__ import annotations

import argparse
import os


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve the gateway in production (uvloop, httptools, N workers); settings from the environment",
        description="Serve the gateway outside Azure Functions. Settings come from the "
        "environment only (the GATEWAY_* variables of README.md); nothing is created.",
    )
    parser.add_argument("--host", default=os.environ.get("HOST", "0.0.0.0"),  # noqa: S104
                        help="address to listen on (default: $HOST or 0.0.0.0)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")),
                        help="port to listen on (default: $PORT or 8080)")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "1")),
                        help="worker processes, one per core is usual (default: $WEB_CONCURRENCY or 1)")
    parser.add_argument("--access-log", action="store_true",
                        help="log one line per request (off by default: it costs throughput)")
    parser.add_argument("--graceful-seconds", type=float, default=30.0,
                        help="on SIGTERM, how long calls in flight may take to finish (default 30)")
    parser.add_argument("--log-level", default="info",
                        choices=["critical", "error", "warning", "info", "debug"],
                        help="log level (default info)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from functions.server import ServeOptions, serve

    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    return serve(ServeOptions(host=args.host, port=args.port, workers=args.workers,
                              access_log=args.access_log, graceful_seconds=args.graceful_seconds,
                              log_level=args.log_level))
