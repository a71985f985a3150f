"""Slow HTTP clients, run as a process of their own so that their work does not compete
with the server's event loop in the test: ``python -m tests.slow_clients HOST PORT TOKEN
COUNT HEADER_TIMEOUT BODY_TIMEOUT``.

Opens COUNT connections of each kind, spread over a second as slow clients arrive (not all
in one instant, which would make their timeouts fall due at once too), prints ``connected``
once all have sent their first bytes, then one JSON line: per kind, how long after its clock
started the server answered or closed each connection (null when it did neither within its
timeout plus 3 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Callable

# Each kind: its first bytes, and what starts its clock (the server's timeout that ends it).
KINDS = {
    "partial headers": b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: ",
    "a header byte a second": b"G",
    # With the token (added in main), so that the handler waits for the body.
    "a short body": b"POST /produto/scheduler HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
    b"Content-Type: application/json\r\nAuthorization: Bearer %s\r\n\r\n{",
    "Content-Length of 1 TB": b"POST /produto/scheduler HTTP/1.1\r\nHost: x\r\n"
    b"Content-Length: 1000000000000\r\nContent-Type: application/json\r\n\r\n{",
}
REST_OF_HEADERS = b"ET /health HTTP/1.1\r\nHost: x\r\nX-A: b\r\n"


SPREAD = 1.0


async def slow(
    host: str,
    port: int,
    first: bytes,
    kind: str,
    limit: float,
    connected: Callable[[], None],
    delay: float,
) -> float | None:
    await asyncio.sleep(delay)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        started = time.monotonic()
        writer.write(first)
        connected()
        answered = asyncio.ensure_future(reader.read(1))
        if kind == "a header byte a second":
            for byte in REST_OF_HEADERS:
                done, _ = await asyncio.wait([answered], timeout=1)
                if done:
                    break
                writer.write(bytes([byte]))
        await asyncio.wait_for(answered, limit)
        return time.monotonic() - started
    except (TimeoutError, ConnectionError):
        return None
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def main(
    host: str, port: int, token: str, count: int, header_timeout: float, body_timeout: float
) -> None:
    limits = {
        "partial headers": header_timeout,
        "a header byte a second": header_timeout,
        "a short body": body_timeout,
        "Content-Length of 1 TB": 0.0,
    }
    remaining = count * len(KINDS)

    def connected() -> None:
        nonlocal remaining
        remaining -= 1
        if remaining == 0:
            print("connected", flush=True)

    results = await asyncio.gather(
        *(
            slow(
                host,
                port,
                first.replace(b"%s", token.encode()),
                kind,
                limits[kind] + 3,
                connected,
                delay=SPREAD * number / count,
            )
            for kind, first in KINDS.items()
            for number in range(count)
        )
    )
    ended = {kind: results[i * count : (i + 1) * count] for i, kind in enumerate(KINDS)}
    print(json.dumps(ended), flush=True)


if __name__ == "__main__":
    host, port, token, count, header_timeout, body_timeout = sys.argv[1:]
    asyncio.run(
        main(host, int(port), token, int(count), float(header_timeout), float(body_timeout))
    )
