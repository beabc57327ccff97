"""The echo side of load/tests/wss.sh: three WebSocket servers on 127.0.0.1 port 0 that
answer every text message `m` with `{"echo":m}` (what ws2api and ws2api-bench-api answer
ws2api-load with):

    plain   ws://    no TLS
    tls     wss://   server.pem, no client certificate asked for
    mtls    wss://   server.pem, a client certificate signed by ca.pem required

Usage: python3 wss_echo.py DIR   (DIR holds ca.pem, server.pem, server.key)
Prints `plain=P tls=T mtls=M` on one line once all three listen, then serves until killed.
"""

import asyncio
import os
import ssl
import sys

from websockets.asyncio.server import serve


async def echo(ws):
    tls = ws.transport.get_extra_info("ssl_object")
    if tls is not None:
        # One line per TLS connection: wss.sh counts the resumed sessions.
        print(f"tls port={ws.local_address[1]} resumed={int(tls.session_reused)}", file=sys.stderr, flush=True)
    async for message in ws:
        if isinstance(message, str):
            await ws.send('{"echo":' + message + "}")


def context(certs, client_ca=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(certs, "server.pem"), os.path.join(certs, "server.key"))
    ctx.set_alpn_protocols(["http/1.1"])
    if client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(client_ca)
    return ctx


async def main(certs):
    contexts = {
        "plain": None,
        "tls": context(certs),
        "mtls": context(certs, os.path.join(certs, "ca.pem")),
    }
    servers = {}
    for name, ctx in contexts.items():
        # No pings: the load runs are short and send their own traffic.
        servers[name] = await serve(echo, "127.0.0.1", 0, ssl=ctx, ping_interval=None, backlog=1024)
    ports = " ".join(f"{n}={s.sockets[0].getsockname()[1]}" for n, s in servers.items())
    print(ports, flush=True)
    await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
