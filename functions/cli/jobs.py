"""`python -m functions cleanup` / `refresh-due`: run a background job once, from the
command line, with the settings `make run` uses (its stack's storage and paths, then
local.settings.json; variables set in the environment win over both)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "cleanup",
        help="finish interrupted connection creates and deletes",
        description="Finish connection creates and deletes that were interrupted "
        "(what the timer job does), once.",
    )
    _add_local_options(parser)
    parser.set_defaults(handler=run_cleanup)
    parser = subparsers.add_parser(
        "refresh-due",
        help="refresh OAuth tokens that are about to expire",
        description="Refresh the OAuth tokens that expire within the next minutes (what "
        "the timer job does), once. Exit status 1 when any refresh failed.",
    )
    _add_local_options(parser)
    parser.set_defaults(handler=run_refresh_due)


def _add_local_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--settings-file",
        type=Path,
        default=None,
        help="settings file (default: local.settings.json at the checkout's root)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="the local stack's folder, for its storage settings (default: .localdata "
        "beside the settings file)",
    )


def _load_local_settings(args: argparse.Namespace) -> None:
    from functions.devtools.localsettings import LOCAL, load_into_environment
    from functions.devtools.stack import apply_stack_environment

    settings_file: Path = args.settings_file or LOCAL
    apply_stack_environment(args.data_dir or settings_file.resolve().parent / ".localdata")
    if settings_file.exists():
        load_into_environment(settings_file)


def run_refresh_due(args: argparse.Namespace) -> int:
    from functions import jobs

    _load_local_settings(args)
    summary = asyncio.run(jobs.refresh_due_tokens())
    print(f"due {summary['due']}, refreshed {summary['refreshed']}, failed {summary['failed']}")
    return 0 if summary["failed"] == 0 else 1


def run_cleanup(args: argparse.Namespace) -> int:
    from functions import jobs

    _load_local_settings(args)
    removed = asyncio.run(jobs.cleanup_connections())
    print(f"removed {removed} interrupted connection(s) and orphaned secret(s)")
    return 0
