"""Headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe: JSON messages ending in a
NUL byte on file descriptors 3 and 4), so a screenshot waits until the page says it is ready, with no WebDriver and
no browser download. Debian's `chromium` package is enough.

    with Chromium() as browser:
        image = browser.screenshot("file:///.../index.html?ui=0", width=256, height=256)   # (256, 256, 3) uint8
"""

from __future__ import annotations

import base64
import fcntl
import io
import json
import os
import select
import shutil
import subprocess
import time

import numpy as np
from PIL import Image

from smplx.utils.cli import MissingFileError

__all__ = ["Chromium", "find_chromium"]


def find_chromium() -> str | None:
    """The Chromium executable on PATH (Debian's `chromium`), or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Chromium:
    """One headless Chromium (software WebGL through SwiftShader) for several screenshots.

    Raises:
        FileNotFoundError: no chromium on PATH (says how to install it).
    """

    def __init__(self, executable: str | None = None, *, timeout: float = 120.0):
        executable = executable or find_chromium()
        if executable is None:
            raise MissingFileError("chromium is not on PATH: install it (Debian: apt-get install chromium)")
        self.timeout = timeout
        to_browser, self._write = os.pipe()
        self._read, from_browser = os.pipe()

        def pipes():
            """In the child: the browser reads commands on fd 3 and writes answers on fd 4. Copied above 10 first,
            so that dup2 makes inheritable copies even when a pipe already is fd 3 or 4 (close-on-exec there)."""
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser, from_browser)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.process = subprocess.Popen(
            [executable, "--headless", "--no-sandbox", "--disable-gpu", "--use-angle=swiftshader",
             "--enable-unsafe-swiftshader", "--hide-scrollbars", "--remote-debugging-pipe", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=pipes, close_fds=False)
        os.close(to_browser)
        os.close(from_browser)
        self._buffer, self._next = b"", 0

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self._call("Browser.close")
            except (OSError, RuntimeError, TimeoutError):
                self.process.kill()
            self.process.wait(timeout=30)
        for fd in (self._read, self._write):
            try:
                os.close(fd)
            except OSError:
                pass

    def _message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                raise TimeoutError(f"chromium did not answer within {self.timeout:.0f} s")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise RuntimeError(f"chromium exited (code {self.process.poll()})")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def _call(self, method: str, session: str | None = None, **params) -> dict:
        self._next += 1
        message = {"id": self._next, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            answer = self._message(deadline)
            if answer.get("id") == self._next:
                if "error" in answer:
                    raise RuntimeError(f"chromium: {method} failed: {answer['error']}")
                return answer.get("result", {})

    def screenshot(self, url: str, *, width: int, height: int, ready: str = "ready") -> np.ndarray:
        """(height, width, 3) uint8 screenshot of `url` in a fresh tab of that size, taken once document.title is
        `ready`.

        Raises:
            RuntimeError: the page set its title to 'error' (with the page's status text). TimeoutError: never ready.
        """
        target = self._call("Target.createTarget", url="about:blank")["targetId"]
        session = self._call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        try:
            self._call("Emulation.setDeviceMetricsOverride", session, width=width, height=height,
                       deviceScaleFactor=1, mobile=False)
            self._call("Page.navigate", session, url=url)
            deadline = time.monotonic() + self.timeout
            while True:
                title = self._evaluate(session, "document.title")
                if title == ready:
                    break
                if title == "error":
                    raise RuntimeError(f"{url}: {self._evaluate(session, 'document.body.innerText')}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{url} was not ready within {self.timeout:.0f} s (title {title!r})")
                time.sleep(0.1)
            data = self._call("Page.captureScreenshot", session, format="png")["data"]
        finally:
            self._call("Target.closeTarget", targetId=target)
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))

    def _evaluate(self, session: str, expression: str):
        return self._call("Runtime.evaluate", session, expression=expression,
                          returnByValue=True).get("result", {}).get("value")
