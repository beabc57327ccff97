"""What every Python end-to-end test of ws2api shares (tests/*/…_test.py): one line per
check (`PASS name` / `FAIL name: why`), a bounded run per check, the closing
`N passed, M failed` line and exit status, and the shard function.

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
    from checks import Control, check, finish, http_call, metric, note, refuses_flags, report,
        shard_of, stalled_client, upgrade_request
"""

import asyncio
import base64
import http.client
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse

RESULTS = {"passed": 0, "failed": 0}
STARTED = time.monotonic()


def report(name, error=None):
    """Counts and prints one check's outcome."""
    if error is None:
        RESULTS["passed"] += 1
        print(f"PASS {name}", flush=True)
    else:
        RESULTS["failed"] += 1
        print(f"FAIL {name}: {error}", flush=True)


async def check(name, coro, timeout=30.0):
    """Runs one check: the coroutine raises AssertionError (or anything) to fail, and
    fails if it takes longer than `timeout` seconds."""
    try:
        await asyncio.wait_for(coro, timeout)
        report(name)
    except AssertionError as e:
        report(name, str(e) or "assertion failed")
    except asyncio.TimeoutError:
        report(name, f"timed out after {timeout:.0f} s")
    except Exception as e:  # noqa: BLE001 - any error is a failure of this check
        report(name, f"{type(e).__name__}: {e}")


def note(text):
    """A detail of the check that follows, indented under it."""
    print(f"  ({text})", flush=True)


def finish():
    """Prints `N passed, M failed in S s` and exits 1 if anything failed."""
    elapsed = time.monotonic() - STARTED
    print(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed in {elapsed:.1f} s", flush=True)
    sys.exit(1 if RESULTS["failed"] else 0)


def run_checks(main, args, banner: str):
    """Prints `banner`, runs the async `main(args)` (an interrupt ends it early), then
    `finish()`."""
    print(banner, flush=True)
    try:
        asyncio.run(main(args))
    except KeyboardInterrupt:
        pass
    finish()


def fnv1a64(data: bytes) -> int:
    """FNV-1a 64, the shard function of shards/src/shard_fn.rs."""
    h = 0xCBF29CE484222325
    for byte in data:
        h ^= byte
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def shard_of(client_id: str, shards: int) -> int:
    """The shard that owns `client_id`."""
    return fnv1a64(client_id.encode()) % shards


def http_call(base, method, path, body=b"", content_type=None, timeout=5.0):
    """One blocking, bounded request to `base` (e.g. a control listener's URL); returns
    (status, body bytes, headers)."""
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        headers = {"Content-Type": content_type} if content_type else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read(), resp.headers
    finally:
        conn.close()


class Control:
    """The control listener of one gateway (tests add the routes they drive)."""

    def __init__(self, base):
        self.base = base.rstrip("/")

    async def call(self, method, path, body=b"", content_type=None):
        """(status, body bytes, headers) of one request, off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, http_call, self.base, method, path, body, content_type)

    async def status(self, method, path, body=b""):
        status, _, _ = await self.call(method, path, body)
        return status

    async def json(self, method, path, body=b"", content_type=None):
        """The JSON answer of a request that must answer 200."""
        status, data, _ = await self.call(method, path, body, content_type)
        assert status == 200, f"{method} {path} answered {status}: {data[:200]!r}"
        try:
            return json.loads(data)
        except ValueError as e:
            raise AssertionError(f"{method} {path}: not JSON ({e}): {data[:200]!r}") from None

    async def metrics(self):
        """/metrics as {(name, frozenset(labels)): value}."""
        status, data, _ = await self.call("GET", "/metrics")
        assert status == 200, f"GET /metrics answered {status}"
        out = {}
        for line in data.decode().splitlines():
            if not line or line.startswith("#"):
                continue
            series, _, value = line.rpartition(" ")
            name, _, labels = series.partition("{")
            pairs = frozenset(
                tuple(p.split("=", 1)) for p in labels.rstrip("}").split(",") if "=" in p
            )
            pairs = frozenset((k, v.strip('"')) for k, v in pairs)
            out[(name, pairs)] = float(value)
        return out

    async def total(self, name, **labels):
        """A metric summed over shards (and any other labels not given)."""
        return sum(metric(await self.metrics(), name, **labels).values())


def metric(metrics, name, **labels):
    """{shard: value} of `name` whose labels include `labels`."""
    want = {(k, str(v)) for k, v in labels.items()}
    found = {}
    for (n, pairs), value in metrics.items():
        if n == name and want <= pairs:
            shard = dict(pairs).get("shard", "-")
            found[shard] = found.get(shard, 0) + value
    return found


def upgrade_request(host, target):
    """The bytes of a WebSocket upgrade request for `/<target>` (a ClientId, with a query
    if wanted) to `host` (host:port), with a fresh key."""
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET /{target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def refuses_flags(binary, argv, flag, timeout=5.0):
    """Asserts that `binary argv...` is an unusable configuration: exit status 2 within
    `timeout` seconds and exactly one line on stderr, which names `flag`. Blocking (run
    it off the event loop)."""
    shown = " ".join(argv)
    try:
        p = subprocess.run([binary, *argv], capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"ws2api {shown}: still running after {timeout:.0f} s (accepted the flags)") from None
    lines = [line for line in p.stderr.decode(errors="replace").splitlines() if line.strip()]
    assert p.returncode == 2, f"ws2api {shown}: exit code {p.returncode}, expected 2; stderr {lines}"
    assert len(lines) == 1, f"ws2api {shown}: stderr has {len(lines)} lines: {lines}"
    assert flag in lines[0], f"ws2api {shown}: stderr does not name {flag}: {lines[0]!r}"
    return lines[0]


def stalled_client(gateway, target, rcvbuf=4096, timeout=5.0):
    """A raw client of `gateway` (ws://host:port) that completes the handshake for
    `/<target>` (a ClientId, with a query if wanted) and then does not read: a small
    receive buffer (set before connect, so the window is small from the start) makes the
    gateway's kernel buffers fill and its own queue grow. Returns the socket and any
    bytes read past the 101 head; the caller closes the socket."""
    u = urllib.parse.urlsplit(gateway)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(timeout)
        s.connect((u.hostname, u.port))
        s.sendall(upgrade_request(u.netloc, target))
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 16384:
            chunk = s.recv(1024)
            if not chunk:
                break
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), f"stalled client's handshake: {head[:80]!r}"
        return s, head.split(b"\r\n\r\n", 1)[1]
    except BaseException:
        s.close()
        raise
