"""Open a page in headless Chromium over the DevTools protocol (`--remote-debugging-pipe`, no
websocket library needed): the console errors and uncaught exceptions it raised, its text after
loading, and a screenshot."""

from __future__ import annotations

import base64
import io
import json
import os
import select
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-unsafe-swiftshader",
    "--window-size=1400,1000",
]


@dataclass
class PageVisit:
    errors: list[str] = field(default_factory=list)
    text: str = ""
    screenshot: bytes = b""
    value: object = None  # what the `evaluate` expression returned


class _Pipe:
    """Chromium reads commands from fd 3 and writes replies and events to fd 4, NUL-separated JSON."""

    def __init__(self, user_data_dir: str) -> None:
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        # bash hands the pipe ends over as fds 3 and 4 (dash takes one-digit fds only), then becomes Chromium.
        argv = [
            CHROMIUM,
            *FLAGS,
            "--remote-debugging-pipe",
            f"--user-data-dir={user_data_dir}",
            "about:blank",
        ]
        command = " ".join(shlex.quote(a) for a in argv)
        self.process = subprocess.Popen(
            ["/bin/bash", "-c", f"exec {command} 3<&{to_child_r} 4>&{from_child_w}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(to_child_r, from_child_w),
            start_new_session=True,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def send(
        self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30
    ) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 30) -> dict:
        for i, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            event = self._read(deadline)
            if event.get("method") == method:
                return event
            self.events.append(event)

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_child], [], [], left)[0]:
                raise TimeoutError("no answer from Chromium")
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def close(self) -> None:
        """Ask the browser to quit; if it does not, end its process group (it and its helpers only)."""
        try:
            os.write(self._to_child, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
            self.process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        os.close(self._to_child)
        os.close(self._from_child)


def _errors(events: list[dict]) -> list[str]:
    errors = []
    for event in events:
        params = event.get("params", {})
        if event.get("method") == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            errors.append(details.get("exception", {}).get("description") or details.get("text", "exception"))
        elif event.get("method") == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = params.get("args", [])
            errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in args))
        elif event.get("method") == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            errors.append(params["entry"].get("text", "log error"))
    return errors


def visit(
    path: Path, settle: float = 2.0, width: int = 1400, evaluate: str | None = None, scale: float = 0.25
) -> PageVisit:
    """Load the file in a window `width` pixels wide, let its scripts run, and collect errors, text,
    a PNG screenshot of the first 1000 pixels' height (at `scale`) and the value of `evaluate`
    (a JavaScript expression) on the page."""
    with tempfile.TemporaryDirectory(prefix="chromium-", ignore_cleanup_errors=True) as profile:
        pipe = _Pipe(profile)
        try:
            target = pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                pipe.send(f"{domain}.enable", session=session)
            metrics = {"width": width, "height": 1000, "deviceScaleFactor": 1, "mobile": False}
            pipe.send("Emulation.setDeviceMetricsOverride", metrics, session=session)
            pipe.send("Page.navigate", {"url": path.resolve().as_uri()}, session=session)
            pipe.wait_for("Page.loadEventFired", timeout=60)
            time.sleep(settle)  # plotly draws after load
            body = {"expression": "document.body.innerText", "returnByValue": True}
            text = pipe.send("Runtime.evaluate", body, session=session)["result"].get("value", "")
            value = None
            if evaluate is not None:
                answer = pipe.send(
                    "Runtime.evaluate", {"expression": evaluate, "returnByValue": True}, session=session
                )
                value = answer["result"].get("value")
            # By default the viewport at a quarter of its size: enough to tell a drawn page from a blank one.
            clip = {"x": 0, "y": 0, "width": width, "height": 1000, "scale": scale}
            shot = pipe.send("Page.captureScreenshot", {"format": "png", "clip": clip}, session=session)
            pipe.send("Runtime.evaluate", {"expression": "1"}, session=session)  # flush pending events
            screenshot = base64.b64decode(shot["data"])
            return PageVisit(errors=_errors(pipe.events), text=text, screenshot=screenshot, value=value)
        finally:
            pipe.close()


def png_pixels(data: bytes) -> np.ndarray:
    """A PNG as a height x width x channels uint8 array: RGBA where it has transparency, else RGB."""
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG", f"not a PNG but {image.format}"
        alpha = "A" in image.getbands() or "transparency" in image.info
        return np.asarray(image.convert("RGBA" if alpha else "RGB"))
