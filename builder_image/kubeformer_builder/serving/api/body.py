"""Reading a request body with a size cap and a deadline, so no client can hold unbounded memory.

A declared Content-Length over the cap is refused before a byte of the body is read; a chunked body
is read chunk by chunk and refused as soon as it passes the cap (uvicorn stops reading the socket
while a chunk waits, so at most one chunk more than the cap is ever held). A client that sends its
body slower than the deadline gets 408 and its connection is closed; other requests never wait on it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.requests import Request

from kubeformer_builder.serving.api.errors import ApiError, too_large


async def read_json(request: Request, max_bytes: int, timeout_s: float) -> Any:
    """The JSON body of `request`; ApiError 413 over `max_bytes`, 408 past `timeout_s`, 400 if not JSON."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise too_large("body", f"{int(declared)} bytes is above the limit of {max_bytes} bytes")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_bytes:
                    raise too_large("body", f"more than {max_bytes} bytes (the limit)")
                chunks.append(chunk)
    except TimeoutError:
        raise ApiError(408, f"body: not received within {timeout_s:g}s", "body") from None
    try:
        return orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as error:
        raise ApiError(400, f"body: not valid JSON ({error})", "body") from None
