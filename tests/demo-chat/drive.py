#!/usr/bin/env python3
"""Drives the demo's chat page in headless Chromium over the Chrome DevTools protocol.

    drive.py --page http://127.0.0.1:PORT/ --chromium /usr/bin/chromium --out DIR

Three tabs: B and C open first (B in room r1, C in r2), then A in r1. Checks that B sees
"A joined", that a line typed into A shows in B, and that C has seen neither once B has.
Saves a screenshot of tab B as DIR/demo-chat-B.png. Run by tests/demo-chat/run.sh.

Every wait is event-driven with a deadline: a Promise evaluated in the page that resolves from a
MutationObserver on the message list, and Chromium's "DevTools listening on" line for its start.
"""

import argparse
import asyncio
import base64
import json
import os
import sys
import tempfile

import websockets

DEADLINE = 10.0  # seconds for any one wait


class Browser:
    """One DevTools connection to the browser; pages are flat sessions on it."""

    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0
        self.waiting = {}
        self.reader = asyncio.create_task(self._read())

    async def _read(self):
        async for raw in self.ws:
            msg = json.loads(raw)
            fut = self.waiting.pop(msg.get("id"), None)
            if fut and not fut.done():
                fut.set_result(msg)

    async def call(self, method, session=None, **params):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        fut = asyncio.get_running_loop().create_future()
        self.waiting[self.next_id] = fut
        await self.ws.send(json.dumps(msg))
        answer = await asyncio.wait_for(fut, DEADLINE + 5)
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer["result"]

    async def tab(self, url):
        target = await self.call("Target.createTarget", url="about:blank")
        attached = await self.call("Target.attachToTarget", targetId=target["targetId"], flatten=True)
        tab = Tab(self, attached["sessionId"])
        await tab.call("Page.enable")
        await tab.call("Runtime.enable")
        await tab.call("Page.navigate", url=url)
        # The page is served in one piece; wait for its script to have run.
        await tab.until("document.readyState === 'complete' && !!document.body.dataset.ws")
        return tab


class Tab:
    def __init__(self, browser, session):
        self.browser = browser
        self.session = session

    async def call(self, method, **params):
        return await self.browser.call(method, session=self.session, **params)

    async def eval(self, expression):
        result = await self.call(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:60]}...: {result['exceptionDetails'].get('exception', result['exceptionDetails'])}")
        return result["result"].get("value")

    async def until(self, condition):
        """Waits (event-driven, in the page) until `condition` is true, at most DEADLINE s."""
        ms = int(DEADLINE * 1000)
        await self.eval(
            f"""new Promise((resolve, reject) => {{
                const ok = () => {{ try {{ return {condition}; }} catch (e) {{ return false; }} }};
                if (ok()) return resolve(true);
                const seen = new MutationObserver(() => {{ if (ok()) {{ seen.disconnect(); resolve(true); }} }});
                seen.observe(document, {{subtree: true, childList: true, attributes: true, characterData: true}});
                document.addEventListener('readystatechange', () => {{ if (ok()) resolve(true); }});
                setTimeout(() => reject(new Error('not within {DEADLINE} s: ' + {json.dumps(condition)})), {ms});
            }})"""
        )

    async def lines(self):
        return await self.eval("[...document.querySelectorAll('#log li')].map(li => li.textContent)")

    async def until_line(self, text):
        await self.until(
            f"[...document.querySelectorAll('#log li')].some(li => li.textContent === {json.dumps(text)})"
        )

    async def join(self, name, room):
        await self.eval(
            f"""document.getElementById('name').value = {json.dumps(name)};
                document.getElementById('room').value = {json.dumps(room)};
                document.getElementById('connect').click();"""
        )
        await self.until("document.body.dataset.state === 'open'")

    async def type_line(self, text):
        """Types `text` into the message field the way a user does, then presses Enter."""
        await self.eval("document.getElementById('text').focus()")
        await self.call("Input.insertText", text=text)
        for kind in ("keyDown", "keyUp"):
            await self.call(
                "Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter",
                windowsVirtualKeyCode=13, nativeVirtualKeyCode=13,
                **({"text": "\r"} if kind == "keyDown" else {}),
            )


async def start_chromium(chromium, profile):
    proc = await asyncio.create_subprocess_exec(
        chromium,
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
        "--disable-dev-shm-usage", f"--user-data-dir={profile}",
        "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
        "--window-size=900,700", "about:blank",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    log = []

    async def devtools_url():
        while True:
            line = await proc.stderr.readline()
            if not line:
                raise RuntimeError("chromium exited before DevTools listened:\n" + "".join(log[-20:]))
            text = line.decode(errors="replace")
            log.append(text)
            if text.startswith("DevTools listening on "):
                return text.split(" on ", 1)[1].strip()

    try:
        url = await asyncio.wait_for(devtools_url(), 30)
    except BaseException:
        proc.kill()
        await proc.wait()
        raise

    async def drain():  # keep its stderr pipe from filling up
        while await proc.stderr.readline():
            pass

    asyncio.create_task(drain())
    return proc, url


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--page", required=True)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--out", default=tempfile.gettempdir())
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="ws2api-demo-chat-profile.") as profile:
        proc, url = await start_chromium(args.chromium, profile)
        try:
            async with websockets.connect(url, max_size=None, open_timeout=DEADLINE) as ws:
                browser = Browser(ws)
                b = await browser.tab(args.page)
                await b.join("B", "r1")
                c = await browser.tab(args.page)
                await c.join("C", "r2")
                a = await browser.tab(args.page)
                await a.join("A", "r1")

                await b.until_line("A joined")
                print("ok: B sees 'A joined'")

                line = "hello <b>room</b> & r1"
                await a.type_line(line)
                await b.until_line(f"A: {line}")
                await a.until_line(f"A: {line}")
                print("ok: a line typed in A shows in B (and in A)")
                # In order: a broadcast reaches every member before it is answered, and the
                # demo broadcasts before answering A's message; B has it, so C would have too.
                assert await b.eval("document.querySelectorAll('#log b').length") == 0, "markup was parsed"
                seen_by_c = await c.lines()
                assert not any(l.startswith("A") for l in seen_by_c), f"C (room r2) got {seen_by_c}"
                print(f"ok: C in r2 saw neither: {seen_by_c}")

                shot = await b.call("Page.captureScreenshot", format="png")
                path = os.path.join(args.out, "demo-chat-B.png")
                with open(path, "wb") as f:
                    f.write(base64.b64decode(shot["data"]))
                print(f"screenshot of tab B: {path}")
                print(f"B: {await b.lines()}")
                try:
                    await browser.call("Browser.close")
                except (RuntimeError, asyncio.TimeoutError, websockets.exceptions.ConnectionClosed):
                    pass  # it may close the socket before it answers
        finally:
            if proc.returncode is None:
                try:
                    await asyncio.wait_for(proc.wait(), 5)
                except asyncio.TimeoutError:
                    proc.kill()
                    await proc.wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except (AssertionError, RuntimeError, asyncio.TimeoutError, OSError) as e:
        print(f"drive.py: FAIL: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
