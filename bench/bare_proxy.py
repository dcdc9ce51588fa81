"""The baseline: a bare aiohttp pass-through proxy with no policy, no state, no log.

It does the same network work as sendgate (read the body, POST it upstream on a
pooled session, relay status, body and content type) and nothing else.
"""

from __future__ import annotations

import argparse
import asyncio

import aiohttp
from aiohttp import web


SESSION = web.AppKey("session", aiohttp.ClientSession)


async def pooled_session(app: web.Application):  # type: ignore[no-untyped-def]
    """cleanup_ctx: the app's upstream session, pooled, in app[SESSION]."""
    app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
    yield
    await app[SESSION].close()


async def relay(request: web.Request, upstream: str, body: bytes) -> web.Response:
    """POST `body` to the same path under `upstream`; Meta's status, body and content type back."""
    headers = {k: request.headers[k] for k in ("Authorization", "Content-Type") if k in request.headers}
    async with request.app[SESSION].post(upstream + request.raw_path, data=body, headers=headers) as response:
        payload = await response.read()
        out = web.Response(status=response.status, body=payload)
        out.headers["Content-Type"] = response.headers.get("Content-Type", "application/json")
        return out


def make_app(upstream: str) -> web.Application:
    app = web.Application()

    async def forward(request: web.Request) -> web.Response:
        return await relay(request, upstream, await request.read())

    app.cleanup_ctx.append(pooled_session)
    app.router.add_post("/{tail:.*}", forward)
    return app


async def _serve(port: int, upstream: str) -> None:
    runner = web.AppRunner(make_app(upstream), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"bare proxy listening on http://127.0.0.1:{port}", flush=True)  # only once it accepts
    try:
        await asyncio.Event().wait()  # until SIGTERM
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    asyncio.run(_serve(args.port, args.upstream.rstrip("/")))


if __name__ == "__main__":
    main()
