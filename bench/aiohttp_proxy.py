"""A plain aiohttp proxy, for information: what a Python proxy costs with aiohttp for
both server and client (one ClientSession, no framework, no cookie jar).

`python -m bench.aiohttp_proxy --port P` with BENCH_UPSTREAM_URL=http://127.0.0.1:PORT.
Every request is forwarded to the upstream with the same raw path and query, hop-by-hop
headers and Host dropped, and the answer sent back whole (the bench's answers are small).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator

from aiohttp import ClientSession, DummyCookieJar, TCPConnector, web

from bench.passthrough import HOP_BY_HOP


async def session_context(app: web.Application) -> AsyncIterator[None]:
    connector = TCPConnector(limit=200, limit_per_host=0)
    async with ClientSession(connector=connector, cookie_jar=DummyCookieJar(),
                             auto_decompress=False) as session:
        app["session"] = session
        yield


async def proxy(request: web.Request) -> web.Response:
    session: ClientSession = request.app["session"]
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
    body = await request.read()
    url = request.app["upstream"] + request.raw_path
    async with session.request(request.method, url, headers=headers, data=body or None,
                               allow_redirects=False, skip_auto_headers=("Content-Type",)) as upstream:
        content = await upstream.read()
        out = [(k, v) for k, v in upstream.headers.items()
               if k.lower() not in HOP_BY_HOP and k.lower() != "content-length"]
        return web.Response(status=upstream.status, body=content, headers=out)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.aiohttp_proxy")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app["upstream"] = os.environ["BENCH_UPSTREAM_URL"].rstrip("/")
    app.cleanup_ctx.append(session_context)
    app.router.add_route("*", "/{tail:.*}", proxy)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
