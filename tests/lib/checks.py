"""What every Python end-to-end test of ws2api shares (tests/*/…_test.py): one line per
check (`PASS name` / `FAIL name: why`), a bounded run per check, the closing
`N passed, M failed` line and exit status, and the shard function.

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
    from checks import check, finish, http_call, note, report, shard_of
"""

import asyncio
import http.client
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
