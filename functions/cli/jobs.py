"""`python -m functions cleanup`: run a background job once, from the command line."""

from __future__ import annotations

import argparse
import asyncio


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "cleanup", help="finish interrupted connection creates and deletes"
    )
    parser.set_defaults(handler=run_cleanup)
    parser = subparsers.add_parser(
        "refresh-due", help="refresh OAuth tokens that are about to expire"
    )
    parser.set_defaults(handler=run_refresh_due)


def _load_local_settings() -> None:
    from functions.devtools.localsettings import LOCAL, load_into_environment

    if LOCAL.exists():
        load_into_environment()


def run_refresh_due(args: argparse.Namespace) -> int:
    from functions import jobs

    _load_local_settings()
    summary = asyncio.run(jobs.refresh_due_tokens())
    print(f"due {summary['due']}, refreshed {summary['refreshed']}, failed {summary['failed']}")
    return 0 if summary["failed"] == 0 else 1


def run_cleanup(args: argparse.Namespace) -> int:
    from functions import jobs

    _load_local_settings()
    removed = asyncio.run(jobs.cleanup_connections())
    print(f"removed {removed} interrupted connection(s) and orphaned secret(s)")
    return 0
