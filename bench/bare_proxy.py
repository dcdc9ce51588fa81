"""The baseline: a bare aiohttp pass-through proxy with no policy, no state, no log.

It does the same network work as sendgate (read the body, POST it upstream on a
pooled session, relay status, body and content type) and nothing else.
"""

from __future__ import annotations

import argparse

import aiohttp
from aiohttp import web


def make_app(upstream: str) -> web.Application:
    app = web.Application()
    session_key = web.AppKey("session", aiohttp.ClientSession)

    async def session(app: web.Application):  # type: ignore[no-untyped-def]
        app[session_key] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
        yield
        await app[session_key].close()

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k: request.headers[k] for k in ("Authorization", "Content-Type") if k in request.headers}
        async with app[session_key].post(upstream + request.raw_path, data=body, headers=headers) as response:
            payload = await response.read()
            out = web.Response(status=response.status, body=payload)
            out.headers["Content-Type"] = response.headers.get("Content-Type", "application/json")
            return out

    app.cleanup_ctx.append(session)
    app.router.add_post("/{tail:.*}", forward)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    print(f"bare proxy listening on http://127.0.0.1:{args.port}", flush=True)
    web.run_app(make_app(args.upstream.rstrip("/")), host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
