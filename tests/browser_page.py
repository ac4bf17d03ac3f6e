"""Load a local page in headless Chromium and say what a reader's browser would see.

The Chrome DevTools Protocol is spoken over `--remote-debugging-pipe` (fd 3 in, fd 4
out, NUL-terminated JSON messages), so no port, no websocket and no extra package.
Every wait has a deadline, and the browser is killed whatever happens.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
         "--no-first-run", "--no-default-browser-check", "--disable-extensions",
         "--hide-scrollbars", "--window-size=1280,1000"]
# The page's own images: each one's source (cut short), whether it finished and its width.
_IMAGES = ("JSON.stringify(Array.from(document.images, i => "
           "[i.currentSrc.slice(0, 40), i.complete, i.naturalWidth]))")
MAX_SHOT_HEIGHT = 12_000  # CSS pixels of the page kept in the screenshot


@dataclass
class PageCheck:
    """What loading the page gave: errors logged, each image's state, a screenshot."""

    errors: list[str] = field(default_factory=list)
    images: list[tuple[str, bool, int]] = field(default_factory=list)
    screenshot: bytes = b""


class _Pipe:
    """A DevTools session over the browser's pipe: commands, and the events seen so far."""

    def __init__(self, proc: subprocess.Popen, write_fd: int, read_fd: int,
                 deadline: float) -> None:
        self.proc, self.write_fd, self.read_fd, self.deadline = proc, write_fd, read_fd, deadline
        self.buffer = b""
        self.events: list[dict] = []
        self.next_id = 0

    def _message(self) -> dict:
        while b"\0" not in self.buffer:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the browser did not answer in time")
            ready, _, _ = select.select([self.read_fd], [], [], left)
            if ready:
                chunk = os.read(self.read_fd, 1 << 20)
                if not chunk:
                    raise ConnectionError(f"the browser closed its pipe "
                                          f"(exit code {self.proc.poll()})")
                self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, session: str | None = None, **params: object) -> dict:
        self.next_id += 1
        message: dict = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._message()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str) -> None:
        while not any(e.get("method") == method for e in self.events):
            self.events.append(self._message())


def _high(fd: int) -> int:
    """`fd` moved above 4, so placing the pipe ends at 3 and 4 never overwrites the other."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


def _errors(events: list[dict]) -> list[str]:
    out = []
    for e in events:
        p = e.get("params", {})
        if e.get("method") == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            out.append(f"exception: {d.get('text')} "
                       f"{d.get('exception', {}).get('description', '')}".strip())
        elif e.get("method") == "Runtime.consoleAPICalled" and p.get("type") in ("error",
                                                                                 "assert"):
            out.append("console: " + " ".join(str(a.get("value", a.get("description")))
                                              for a in p.get("args", [])))
        elif e.get("method") == "Log.entryAdded" and p["entry"].get("level") == "error":
            out.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}".strip())
    return out


def check_page(binary: str, page: Path, profile: Path, timeout_s: float = 60.0) -> PageCheck:
    """Open `page` in a fresh headless browser (profile folder `profile`), wait for its load
    event and a moment after, and return its errors, images and a full-page screenshot."""
    to_browser_r, to_browser_w = map(_high, os.pipe())
    from_browser_r, from_browser_w = map(_high, os.pipe())

    def _child() -> None:  # the browser reads commands on fd 3 and writes on fd 4
        os.dup2(to_browser_r, 3)
        os.dup2(from_browser_w, 4)

    with open(profile / "chromium.log", "wb") as log:
        proc = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                preexec_fn=_child, close_fds=False)
    os.close(to_browser_r)
    os.close(from_browser_w)
    pipe = _Pipe(proc, to_browser_w, from_browser_r, time.monotonic() + timeout_s)
    try:
        target = pipe.send("Target.createTarget", url="about:blank")["targetId"]
        session = pipe.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            pipe.send(f"{domain}.enable", session)
        pipe.send("Page.navigate", session, url=page.resolve().as_uri())
        pipe.wait_for("Page.loadEventFired")
        pipe.send("Runtime.evaluate", session, expression="new Promise(r => setTimeout(r, 300))",
                  awaitPromise=True)  # late console messages
        images = json.loads(pipe.send("Runtime.evaluate", session, expression=_IMAGES,
                                      returnByValue=True)["result"]["value"])
        size = pipe.send("Page.getLayoutMetrics", session)["cssContentSize"]
        shot = pipe.send("Page.captureScreenshot", session, format="png",
                         captureBeyondViewport=True,
                         clip={"x": 0, "y": 0, "width": size["width"],
                               "height": min(size["height"], MAX_SHOT_HEIGHT), "scale": 1})
        check = PageCheck(_errors(pipe.events), [tuple(i) for i in images],
                          base64.b64decode(shot["data"]))
        return check
    finally:
        os.close(to_browser_w)
        os.close(from_browser_r)
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
