#!/usr/bin/env python3
"""TLS checks (SPEC "TLS and client certificates"): Python `ssl` + `websockets` clients,
blocking TLS sockets and raw TCP sockets against three running ws2api gateways speaking
wss:// (--shards 2 --ping-interval 0s) in front of tests/tls/api.php; see tests/tls/run.sh.

    python3 tests/tls/tls_test.py \\
        --required wss://127.0.0.1:7001 --required-control http://127.0.0.1:7002 \\
        --optional wss://127.0.0.1:7011 --optional-control http://127.0.0.1:7012 \\
        --nocert wss://127.0.0.1:7021 --nocert-control http://127.0.0.1:7022 \\
        --nocert-pid 1234 --nocert-stderr /tmp/ws2api-nocert.err --handshake-timeout 2 \\
        --certs /tmp/certs --shards 2 --api-log /tmp/api.jsonl --ws2api-bin target/release/ws2api

The gateways (as run.sh starts them):
    required  --tls-client-ca ca.pem (client certificates required)
    optional  --tls-client-ca ca.pem --tls-client-auth optional
    nocert    no client CA, --handshake-timeout 2s, certificate files live.pem/live.key
              (rewritten here before each SIGHUP)
--certs holds what run.sh made: ca, other (a second CA), server, server2 (signed by ca,
other CN and serial), good, expired, stranger (signed by other): NAME.pem and NAME.key.

api.php logs every request with its X-* headers (one JSON line each) to --api-log: the
Connect headers are read there, and "no API request" for a failed handshake means no
line at all was added while it was tried. Every failed handshake provoked here is counted
per gateway and reason, and the last check compares those counts with the gateway's
ws2api_tls_handshake_failures_total. Prints "PASS name" or "FAIL name: why" per check,
then "N passed, M failed"; exits 1 if anything failed. Every wait is bounded by a
timeout; every poll by a count.
"""

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import urllib.parse
import uuid
import warnings

import websockets

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import checks  # noqa: E402
from checks import check, finish, metric, note, refuses_flags, upgrade_request  # noqa: E402

TIMEOUT = 5.0  # seconds, for any single wait
REASONS = ("protocol", "certificate", "closed", "timeout")
CERT_HEADERS = ("x-client-cert-subject", "x-client-cert-cn", "x-client-cert-fingerprint")


async def until(what, probe, ok, seconds=TIMEOUT, interval=0.05):
    """Calls `probe()` (a function or a coroutine function) until `ok(value)`: at most
    seconds/interval times; returns the value."""
    value = None
    for _ in range(int(seconds / interval)):
        value = probe()
        if asyncio.iscoroutine(value):
            value = await value
        if ok(value):
            return value
        await asyncio.sleep(interval)
    raise AssertionError(f"{what}: not so within {seconds:.1f} s (last seen: {value!r})")


# ---- the certificates ----------------------------------------------------------------


class Certs:
    def __init__(self, folder):
        self.folder = folder

    def path(self, name, ext="pem"):
        return os.path.join(self.folder, f"{name}.{ext}")

    def der(self, name):
        with open(self.path(name), encoding="ascii") as f:
            return ssl.PEM_cert_to_DER_cert(f.read())

    def openssl_subject(self, name):
        """`openssl x509 -noout -subject -nameopt RFC2253` without its `subject=`."""
        out = subprocess.run(
            ["openssl", "x509", "-in", self.path(name), "-noout", "-subject", "-nameopt", "RFC2253"],
            capture_output=True, check=True, timeout=TIMEOUT).stdout.decode().strip()
        assert out.startswith("subject="), f"openssl's subject line: {out!r}"
        return out[len("subject="):]

    def openssl_fingerprint(self, name):
        """SHA-256 of `openssl x509 -outform DER`, lowercase hex."""
        der = subprocess.run(["openssl", "x509", "-in", self.path(name), "-outform", "DER"],
                             capture_output=True, check=True, timeout=TIMEOUT).stdout
        return hashlib.sha256(der).hexdigest()

    def context(self, client=None, version=None, alpn=False):
        """A client context trusting the test CA; `client` presents that certificate;
        `version` pins the TLS version; `alpn` offers http/1.1."""
        ctx = ssl.create_default_context(cafile=self.path("ca"))
        if client is not None:
            ctx.load_cert_chain(self.path(client), self.path(client, "key"))
        if version is not None:
            ctx.minimum_version = ctx.maximum_version = version
        if alpn:
            ctx.set_alpn_protocols(["http/1.1"])
        return ctx


def tls11_context():
    """A client that offers TLS 1.1 only (OpenSSL 3 needs security level 0 for it)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    return ctx


def offers_tls11():
    """Whether tls11_context() really sends a TLS 1.1 ClientHello (client_version 0x0302),
    tried over a local socket pair; (bool, what was seen)."""
    a, b = socket.socketpair()
    try:
        a.setblocking(False)
        tls = tls11_context().wrap_socket(a, do_handshake_on_connect=False)
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError as e:
            return False, str(e)
        b.settimeout(TIMEOUT)
        hello = b.recv(4096)
        return hello[:1] == b"\x16" and hello[9:11] == b"\x03\x02", hello[:11].hex()
    finally:
        a.close()
        b.close()


def legacy_client_hello():
    """A TLS 1.1 ClientHello by hand: legacy_version 0x0302, four RSA/ECDHE CBC suites,
    no extensions (so no supported_versions)."""
    suites = (0xC009, 0xC013, 0x002F, 0x0035)
    body = (b"\x03\x02" + os.urandom(32) + b"\x00"
            + struct.pack(">H", 2 * len(suites)) + b"".join(struct.pack(">H", s) for s in suites)
            + b"\x01\x00")
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack(">H", len(handshake)) + handshake


# ---- the API server's log ------------------------------------------------------------


class ApiRequests:
    """The JSON lines api.php appended to --api-log."""

    def __init__(self, path):
        self.path = path

    def all(self):
        with open(self.path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    def of(self, client_id, method):
        return [r for r in self.all() if r["path"] == f"/{client_id}" and r["method"] == method]

    def one(self, client_id, method):
        got = self.of(client_id, method)
        assert len(got) == 1, f"{len(got)} {method} requests for {client_id}, expected 1"
        return got[0]["headers"]


# ---- the gateways --------------------------------------------------------------------


class Gateway:
    """One gateway, with what this test did to it: TLS handshakes completed and failed
    ones provoked (by reason)."""

    def __init__(self, name, url, control, shards):
        self.name = name
        self.shards = shards
        self.url = url.rstrip("/")
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname, u.port
        self.control = checks.Control(control)
        self.handshakes = 0
        self.failures = dict.fromkeys(REASONS, 0)

    async def counters(self):
        """{"handshakes": ws2api_tls_handshakes_total, reason: failures} summed over
        shards; every series must be there for every shard."""
        m = await self.control.metrics()
        done = metric(m, "ws2api_tls_handshakes_total")
        assert len(done) == self.shards, f"{self.name}: ws2api_tls_handshakes_total for shards {sorted(done)}"
        out = {"handshakes": sum(done.values())}
        for reason in REASONS:
            failed = metric(m, "ws2api_tls_handshake_failures_total", reason=reason)
            assert len(failed) == self.shards, (
                f"{self.name}: ws2api_tls_handshake_failures_total{{reason=\"{reason}\"}} "
                f"for shards {sorted(failed)}")
            out[reason] = sum(failed.values())
        return out

    async def open(self, client_id, ctx):
        """A wss connection that must open (TLS handshake and 101)."""
        ws = await asyncio.wait_for(
            websockets.connect(f"{self.url}/{client_id}", ssl=ctx, open_timeout=TIMEOUT,
                               close_timeout=TIMEOUT, ping_interval=None),
            TIMEOUT + 1)
        self.handshakes += 1
        return ws

    def tls_refusal(self, ctx, client_id):
        """Blocking: a TLS client that completes its side of the handshake, sends an
        upgrade for `client_id` and reads; returns the SSLError it gets (TLS 1.2: in the
        handshake; TLS 1.3: the alert after the client's Finished). Anything else fails."""
        raw = socket.create_connection((self.host, self.port), timeout=TIMEOUT)
        try:
            tls = ctx.wrap_socket(raw, server_hostname=self.host)
            tls.sendall(upgrade_request(f"{self.host}:{self.port}", client_id))
            got = tls.recv(4096)
        except ssl.SSLError as e:
            return f"{e.reason or ''} {e}"
        except OSError as e:
            raise AssertionError(f"{self.name}: expected a TLS alert, got {type(e).__name__}: {e}") from None
        finally:
            raw.close()
        raise AssertionError(f"{self.name}: expected a TLS alert, read {got[:60]!r}")

    def raw_exchange(self, payload, close_early=False):
        """Blocking: sends `payload` over plain TCP and reads until EOF (at most 64 KiB,
        TIMEOUT seconds); returns what came back. `close_early`: close right after
        sending, reading nothing."""
        s = socket.create_connection((self.host, self.port), timeout=TIMEOUT)
        try:
            if payload:
                s.sendall(payload)
            if close_early:
                return b""
            got = b""
            while len(got) < 65536:
                try:
                    chunk = s.recv(4096)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                got += chunk
            return got
        finally:
            s.close()


async def blocking(fn, *args):
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


# ---- the checks ----------------------------------------------------------------------


async def main(args):
    certs = Certs(args.certs)
    api = ApiRequests(args.api_log)
    run = uuid.uuid4().hex[:6]
    req = Gateway("required", args.required, args.required_control, args.shards)
    opt = Gateway("optional", args.optional, args.optional_control, args.shards)
    nocert = Gateway("nocert", args.nocert, args.nocert_control, args.shards)
    gateways = (req, opt, nocert)
    baseline = {}
    serial = iter(range(1_000_000))

    def cid(tag):
        return f"t{run}-{tag}-{next(serial)}"

    async def echo(ws, text, what):
        await ws.send(text)
        got = await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert got == f"echo: {text}", f"{what}: sent {text!r}, got {got!r}"

    async def close(ws, client_id):
        """Closes and waits for the Disconnect, so no request of it comes later."""
        await asyncio.wait_for(ws.close(), TIMEOUT)
        await until(f"Disconnect of {client_id}", lambda: api.of(client_id, "DELETE"),
                    lambda got: len(got) == 1)

    def peer_der(ws):
        return ws.transport.get_extra_info("ssl_object").getpeercert(binary_form=True)

    async def provoke(gw, want, action, what):
        """Runs `action` (a coroutine function), which must fail handshakes: waits until
        the gateway counted them, then the failure counters must have grown by exactly
        `want` ({reason: n}), the handshake counter not at all, and the API server must
        have had no request meanwhile."""
        seen = len(api.all())
        before = await gw.counters()
        result = await action()
        target = {r: before[r] + want.get(r, 0) for r in REASONS}
        after = await until(f"{what}: {gw.name}'s failure counters grow by {want}", gw.counters,
                            lambda c: all(c[r] >= target[r] for r in REASONS))
        grew = {k: int(after[k] - before[k]) for k in after}
        assert grew == {"handshakes": 0, **{r: want.get(r, 0) for r in REASONS}}, (
            f"{what}: {gw.name}'s counters grew by {grew}, expected {want} (and no handshake)")
        late = api.all()[seen:]
        assert not late, f"{what}: the API server got {[(r['method'], r['path']) for r in late]}"
        for reason, n in want.items():
            gw.failures[reason] += n
        return result

    async def refused(gw, client, alerts, what):
        """A client presenting `client` (None: no certificate) refused in TLS 1.3 and in
        TLS 1.2, each with an alert naming one of `alerts`, counted as certificate."""
        async def attempts():
            errors = []
            for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
                error = await blocking(gw.tls_refusal, certs.context(client, version), cid("refused"))
                assert any(a in error for a in alerts), f"{what} ({version.name}): alert {error!r}, expected {alerts}"
                errors.append(error.split(" ", 1)[0])
            return errors

        errors = await provoke(gw, {"certificate": 2}, attempts, what)
        note(f"{what}: TLS 1.3 and 1.2 clients got {', '.join(errors)}")

    # ---- 0: the baselines ------------------------------------------------------------

    async def baselines():
        # run.sh's readiness probe: one TCP connection per public port, closed at once.
        for gw in gateways:
            baseline[gw.name] = await until(f"{gw.name} counts run.sh's probe as closed", gw.counters,
                                            lambda c: c["closed"] >= 1)
            assert baseline[gw.name]["closed"] == 1, f"{gw.name}: {baseline[gw.name]}"

    # ---- 1: required, good certificate ----------------------------------------------

    async def required_good():
        client_id = cid("good")
        ws = await req.open(client_id, certs.context("good"))
        try:
            await echo(ws, "hello over TLS", "good client")
        finally:
            await close(ws, client_id)
        connect = api.one(client_id, "GET")
        subject, fingerprint = certs.openssl_subject("good"), certs.openssl_fingerprint("good")
        assert connect.get("x-client-cert-subject") == subject, (
            f"X-Client-Cert-Subject {connect.get('x-client-cert-subject')!r}, openssl says {subject!r}")
        assert connect.get("x-client-cert-cn") == "charger-17", f"X-Client-Cert-CN {connect.get('x-client-cert-cn')!r}"
        assert connect.get("x-client-cert-fingerprint") == fingerprint, (
            f"X-Client-Cert-Fingerprint {connect.get('x-client-cert-fingerprint')!r}, openssl DER sha256 {fingerprint}")
        for method in ("GET", "POST", "DELETE"):
            proto = api.one(client_id, method).get("x-forwarded-proto")
            assert proto == "https", f"{method} carries X-Forwarded-Proto {proto!r}"
        note(f"X-Client-Cert-Subject: {subject}")

    # ---- 2-4: required, refused certificates -----------------------------------------

    async def required_none():
        await refused(req, None, ("CERTIFICATE_REQUIRED", "HANDSHAKE_FAILURE"), "no certificate")

    async def required_stranger():
        await refused(req, "stranger", ("UNKNOWN_CA",), "a certificate of the other CA")

    async def required_expired():
        await refused(req, "expired", ("CERTIFICATE_EXPIRED",), "an expired certificate")

    # ---- 5: optional ----------------------------------------------------------------

    async def optional():
        anonymous, known = cid("anon"), cid("known")
        for client_id, client in ((anonymous, None), (known, "good")):
            ws = await opt.open(client_id, certs.context(client))
            try:
                await echo(ws, f"from {client or 'nobody'}", f"optional, {client}")
            finally:
                await close(ws, client_id)
        connect = api.one(anonymous, "GET")
        assert connect.get("x-forwarded-proto") == "https", f"X-Forwarded-Proto {connect.get('x-forwarded-proto')!r}"
        shown = [h for h in CERT_HEADERS if h in connect]
        assert not shown, f"a client without a certificate got {shown} on Connect"
        connect = api.one(known, "GET")
        assert connect.get("x-client-cert-subject") == certs.openssl_subject("good"), f"Connect headers {connect}"
        assert connect.get("x-client-cert-fingerprint") == certs.openssl_fingerprint("good"), f"Connect headers {connect}"
        await refused(opt, "stranger", ("UNKNOWN_CA",), "optional, a certificate of the other CA")

    # ---- 6-9: no client CA: versions, non-TLS bytes ----------------------------------

    async def tls12():
        client_id, modern = cid("tls12"), cid("tls13")
        ws = await nocert.open(client_id, certs.context(version=ssl.TLSVersion.TLSv1_2))
        try:
            version = ws.transport.get_extra_info("ssl_object").version()
            assert version == "TLSv1.2", f"a TLS 1.2-only client negotiated {version}"
            await echo(ws, "old but fine", "TLS 1.2 client")
        finally:
            await close(ws, client_id)
        # A default client with a certificate and ALPN: TLS 1.3, http/1.1, and no
        # certificate asked for (so none on Connect).
        ws = await nocert.open(modern, certs.context("good", alpn=True))
        try:
            tls = ws.transport.get_extra_info("ssl_object")
            assert tls.version() == "TLSv1.3", f"a default client negotiated {tls.version()}"
            assert tls.selected_alpn_protocol() == "http/1.1", f"ALPN {tls.selected_alpn_protocol()!r}"
            await echo(ws, "new", "TLS 1.3 client")
        finally:
            await close(ws, modern)
        shown = [h for h in CERT_HEADERS if h in api.one(modern, "GET")]
        assert not shown, f"without --tls-client-ca, Connect carries {shown}"

    async def tls11():
        offered, seen = offers_tls11()
        if offered:
            async def python_client():
                return await blocking(nocert.tls_refusal, tls11_context(), cid("tls11"))

            error = await provoke(nocert, {"protocol": 1}, python_client, "a TLS 1.1 client")
            assert "ALERT" in error.upper(), f"a TLS 1.1 client: {error!r}, expected an alert"
            note(f"a TLS 1.1 Python client got {error.split(' ', 1)[0]}")
        else:
            note(f"the local OpenSSL cannot offer TLS 1.1 ({seen}); only the hand-made ClientHello")

        async def raw_hello():
            return await blocking(nocert.raw_exchange, legacy_client_hello())

        reply = await provoke(nocert, {"protocol": 1}, raw_hello, "a hand-made TLS 1.1 ClientHello")
        assert reply[:1] == b"\x15", f"a TLS 1.1 ClientHello got {reply[:16]!r}, expected an alert record"
        note(f"the hand-made TLS 1.1 ClientHello got the alert record {reply[:7].hex()}")

    async def not_tls():
        http = upgrade_request(f"127.0.0.1:{nocert.port}", cid("plain"))
        garbage = bytearray(os.urandom(64))
        if 20 <= garbage[0] <= 23:  # a TLS record type: make it none
            garbage[0] |= 0x80
        for what, payload in (("a plain-text upgrade request", http), ("64 random bytes", bytes(garbage))):
            async def send(payload=payload):
                return await blocking(nocert.raw_exchange, payload)

            reply = await provoke(nocert, {"protocol": 1}, send, what)
            assert not reply.startswith(b"HTTP/"), f"{what}: an HTTP answer {reply[:40]!r}"
            assert reply == b"" or reply[:1] == b"\x15", f"{what}: got {reply[:16]!r}, expected an alert or EOF"
            note(f"{what}: {'alert ' + reply[:7].hex() if reply else 'EOF'}")

    async def closed_and_timeout():
        hello = legacy_client_hello()

        async def half_hello():
            return await blocking(nocert.raw_exchange, hello[:len(hello) // 2], True)

        await provoke(nocert, {"closed": 1}, half_hello, "half a ClientHello, then close")

        async def silent():
            loop = asyncio.get_running_loop()
            started = loop.time()
            reply = await blocking(nocert.raw_exchange, b"")
            return reply, loop.time() - started

        reply, took = await provoke(nocert, {"timeout": 1}, silent, "a client that sends nothing")
        assert reply == b"", f"a silent client got {reply[:16]!r}"
        assert args.handshake_timeout - 0.5 <= took <= args.handshake_timeout + 2, (
            f"a silent client was closed after {took:.1f} s, --handshake-timeout is {args.handshake_timeout} s")
        note(f"a silent client was closed after {took:.1f} s")

    async def still_serves():
        client_id = cid("after")
        ws = await nocert.open(client_id, certs.context())
        try:
            await echo(ws, "still here", "a client after the refusals")
        finally:
            await close(ws, client_id)

    # ---- 10: SIGHUP ------------------------------------------------------------------

    def stderr_lines():
        with open(args.nocert_stderr, encoding="utf-8", errors="replace") as f:
            return f.read().splitlines()

    async def sighup_line(what):
        """Sends SIGHUP to the nocert gateway; returns the one line about it its stderr
        gains."""
        seen = len(stderr_lines())
        os.kill(args.nocert_pid, signal.SIGHUP)
        lines = await until(f"{what}: a SIGHUP line on the gateway's stderr",
                            lambda: [line for line in stderr_lines()[seen:] if "SIGHUP" in line],
                            lambda got: len(got) >= 1)
        return seen, lines[0]

    async def sighup():
        live_cert, live_key = certs.path("live"), certs.path("live", "key")
        old_id = cid("old")
        old = await nocert.open(old_id, certs.context())
        try:
            assert peer_der(old) == certs.der("server"), "before SIGHUP, the gateway does not show server.pem"
            await echo(old, "before", "the open connection before SIGHUP")
            shutil.copyfile(certs.path("server2"), live_cert)
            shutil.copyfile(certs.path("server2", "key"), live_key)
            _, line = await sighup_line("new cert and key")
            assert "ERROR" not in line, f"reloading a good certificate: {line}"
            for i in range(4):  # new handshakes, whichever shard accepts them
                new_id = cid("new")
                ws = await nocert.open(new_id, certs.context())
                try:
                    assert peer_der(ws) == certs.der("server2"), f"new connection {i} after SIGHUP: not server2.pem"
                finally:
                    await close(ws, new_id)
            await echo(old, "after", "the connection opened before SIGHUP")
            assert peer_der(old) == certs.der("server"), "the open connection's certificate changed"
            note(f"reload: {line.split('ws2api: ', 1)[-1]}")

            with open(live_cert, "w", encoding="ascii") as f:
                f.write("this is not a PEM certificate\n")
            seen, line = await sighup_line("garbage cert")
            new_id = cid("kept")
            ws = await nocert.open(new_id, certs.context())
            try:
                assert peer_der(ws) == certs.der("server2"), "after a failed reload, not the previous (server2) cert"
            finally:
                await close(ws, new_id)
            about = [line for line in stderr_lines()[seen:] if "SIGHUP" in line]
            errors = [line for line in stderr_lines()[seen:] if "ERROR" in line]
            assert len(about) == 1 and about == errors, f"a failed reload logged {stderr_lines()[seen:]}"
            await echo(old, "still", "the connection opened before both SIGHUPs")
            note(f"failed reload: {line.split('ws2api: ', 1)[-1]}")
        finally:
            await close(old, old_id)
            shutil.copyfile(certs.path("server2"), live_cert)

    # ---- 11: bad flags ---------------------------------------------------------------

    async def bad_flags():
        base = ["--listen", "127.0.0.1:0", "--control-listen", "127.0.0.1:0",
                "--api-url", "http://127.0.0.1:9/", "--shards", "2"]
        garbage = certs.path("garbage")
        with open(garbage, "w", encoding="ascii") as f:
            f.write("not PEM at all\n")
        cert, key, ca = certs.path("server"), certs.path("server", "key"), certs.path("ca")
        pair = ["--tls-cert", cert, "--tls-key", key]
        cases = [
            ("--tls-key", ["--tls-cert", cert]),
            ("--tls-cert", ["--tls-key", key]),
            ("--tls-client-ca", ["--tls-client-ca", ca]),
            ("--tls-client-auth", ["--tls-client-auth", "optional"]),
            ("--tls-client-auth", [*pair, "--tls-client-ca", ca, "--tls-client-auth", "maybe"]),
            ("--tls-cert", ["--tls-cert", certs.path("missing"), "--tls-key", key]),
            ("--tls-cert", ["--tls-cert", garbage, "--tls-key", key]),
            ("--tls-key", ["--tls-cert", cert, "--tls-key", garbage]),
            ("--tls-key", ["--tls-cert", cert, "--tls-key", certs.path("good", "key")]),
            ("--tls-client-ca", [*pair, "--tls-client-ca", garbage]),
        ]
        for flag, extra in cases:
            await blocking(refuses_flags, args.ws2api_bin, [*base, *extra], flag)

    # ---- 12: metrics -----------------------------------------------------------------

    async def metrics():
        for gw in gateways:
            now = await gw.counters()
            grew = {k: int(now[k] - baseline[gw.name][k]) for k in now}
            assert grew["handshakes"] >= gw.handshakes, (
                f"{gw.name}: ws2api_tls_handshakes_total grew by {grew['handshakes']}, this test made {gw.handshakes}")
            failed = {r: grew[r] for r in REASONS}
            assert failed == gw.failures, f"{gw.name}: failures by reason grew by {failed}, provoked {gw.failures}"
            note(f"{gw.name}: {grew['handshakes']} handshakes, failures {failed}")

    await check("the baselines: run.sh's probe counted once as reason closed on each gateway", baselines())
    await check("required: a good client certificate echoes; Connect carries its Subject, CN, SHA-256; "
                "X-Forwarded-Proto https", required_good())
    await check("required: no client certificate is refused (TLS 1.3 and 1.2), counted, no API request",
                required_none())
    await check("required: a certificate of another CA is refused with unknown_ca, counted, no API request",
                required_stranger())
    await check("required: an expired certificate is refused with certificate_expired, counted, no API request",
                required_expired())
    await check("optional: no certificate connects without X-Client-Cert-*, a good one has them, "
                "another CA's is refused", optional())
    await check("no client CA: a TLS 1.2-only client negotiates TLSv1.2; a default one TLSv1.3 with ALPN http/1.1",
                tls12())
    await check("no client CA: TLS 1.1 is refused with an alert, counted as protocol, no API request", tls11())
    await check("no client CA: a plain-text upgrade and random bytes get no HTTP answer, counted as protocol",
                not_tls())
    await check("no client CA: half a ClientHello counts as closed, silence as timeout after --handshake-timeout",
                closed_and_timeout(), timeout=30)
    await check("no client CA: a normal wss client is still served after all of that", still_serves())
    await check("SIGHUP: new handshakes get the new certificate, open connections stay; "
                "a bad file keeps it, with one error line", sighup())
    await check("bad --tls-* flags exit 2 with one line naming the flag", bad_flags())
    await check("metrics: handshakes_total grew by at least ours, failures_total by reason as provoked", metrics())


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for g in ("required", "optional", "nocert"):
        ap.add_argument(f"--{g}", required=True, help=f"wss://127.0.0.1:PORT of the {g} gateway")
        ap.add_argument(f"--{g}-control", required=True, help="http://HOST:PORT of its control listener")
    ap.add_argument("--nocert-pid", type=int, required=True, help="the nocert gateway's PID (for SIGHUP)")
    ap.add_argument("--nocert-stderr", required=True, help="the file the nocert gateway's stderr goes to")
    ap.add_argument("--handshake-timeout", type=float, required=True, help="the nocert gateway's, in seconds")
    ap.add_argument("--certs", required=True, help="the folder of certificates run.sh made")
    ap.add_argument("--shards", type=int, default=2, help="--shards of every gateway")
    ap.add_argument("--api-log", required=True, help="the JSON-lines file api.php appends every request to")
    ap.add_argument("--ws2api-bin", required=True, help="the ws2api binary (for the bad-flag checks)")
    args = ap.parse_args()
    checks.run_checks(main, args, f"websockets {websockets.__version__}, {ssl.OPENSSL_VERSION}")
