"""`python -m functions cleanup`: run a background job once, from the command line."""

from __future__ import annotations

import argparse
import asyncio


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("cleanup", help="finish interrupted connection creates and deletes")
    parser.set_defaults(handler=run_cleanup)


def run_cleanup(args: argparse.Namespace) -> int:
    from functions import jobs
    from functions.devtools.localsettings import LOCAL, load_into_environment

    if LOCAL.exists():
        load_into_environment()
    removed = asyncio.run(jobs.cleanup_connections())
    print(f"removed {removed} interrupted connection(s)")
    return 0
