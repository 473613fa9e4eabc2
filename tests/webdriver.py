"""Debian's headless Chromium, driven through chromedriver's W3C WebDriver API with urllib alone.

WebDriver is JSON over HTTP, and a console test needs a handful of its commands (open a page,
find an element, type, click, run a script, take a screenshot): they fit in this module, so
the tests need no browser-automation package and nothing that downloads a browser or driver.
"""
from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from tests.netutil import free_port
from tests.processes import LOCALHOST, http
from tests.waiting import wait_for

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

#: Headless, and quiet: no first-run UI, no calls home (updates, sync, QUIC probes) from a test machine.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1000"]

#: The key under which WebDriver returns an element reference.
_ELEMENT = "element-6066-11e4-a52e-4f735466cecf"

#: Starting Chromium on 2 busy cores can take a while; a command after that is quick.
START_TIMEOUT = 30.0
COMMAND_TIMEOUT = 15.0


def available() -> bool:
    return os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)


class WebDriverError(AssertionError):
    """chromedriver answered a command with an error (no such element, timeout...)."""


class Browser:
    """One headless Chromium window with a fresh profile under ``work_dir`` (with chromedriver's log)."""

    def __init__(self, work_dir: Path) -> None:
        work_dir.mkdir(parents=True, exist_ok=True)
        self._log = work_dir / "chromedriver.log"
        port = free_port()
        self._driver = subprocess.Popen([str(CHROMEDRIVER), f"--port={port}", f"--log-path={self._log}"],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
        self._base = f"http://{LOCALHOST}:{port}"
        self._session: str | None = None
        try:
            wait_for(self._driver_ready, START_TIMEOUT, "chromedriver to answer", interval=0.05)
            options = {"binary": str(CHROMIUM), "args": [*CHROMIUM_FLAGS, f"--user-data-dir={work_dir / 'profile'}"]}
            capabilities = {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options}}
            self._session = self._call("POST", "/session", {"capabilities": capabilities}, START_TIMEOUT)["sessionId"]
        except BaseException:
            self.close()
            raise

    def _driver_ready(self) -> bool:
        if self._driver.poll() is not None:
            raise AssertionError(f"chromedriver exited with {self._driver.returncode}; see {self._log}")
        try:
            return bool(self._call("GET", "/status", timeout=1.0).get("ready"))
        except OSError:
            return False

    def _call(self, method: str, path: str, body: Any = None, timeout: float = COMMAND_TIMEOUT) -> Any:
        data = None if body is None else json.dumps(body).encode()
        answer = http(method, self._base + path, data, timeout)
        value = answer.json()["value"]
        if answer.status != 200:
            raise WebDriverError(f"{method} {path}: {value.get('error')}: {value.get('message')}")
        return value

    def _command(self, method: str, path: str, body: Any = None) -> Any:
        return self._call(method, f"/session/{self._session}{path}", body)

    def open(self, url: str) -> None:
        self._command("POST", "/url", {"url": url})

    def _element(self, css: str) -> str:
        return self._command("POST", "/element", {"using": "css selector", "value": css})[_ELEMENT]

    def text(self, css: str) -> str:
        """The visible text of the first element matching ``css``."""
        return self._command("GET", f"/element/{self._element(css)}/text")

    def type(self, css: str, text: str) -> None:
        self._command("POST", f"/element/{self._element(css)}/value", {"text": text})

    def click(self, css: str) -> None:
        self._command("POST", f"/element/{self._element(css)}/click", {})

    def script(self, source: str, *args: Any) -> Any:
        """Run ``source`` (a function body: ``return ...``) in the page; its JSON-able result."""
        return self._command("POST", "/execute/sync", {"script": source, "args": list(args)})

    def script_async(self, source: str, *args: Any) -> Any:
        """Run ``source`` in the page, which ends by calling its last argument with the result
        (``arguments[arguments.length - 1](value)``): for a script that awaits, e.g. an import()."""
        return self._command("POST", "/execute/async", {"script": source, "args": list(args)})

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self._command("GET", "/screenshot")))
        return path

    def close(self) -> None:
        """End the session (chromedriver closes Chromium), then kill the driver's process group,
        which holds any Chromium process the session did not end."""
        if self._session is not None:
            try:
                self._command("DELETE", "")
            except (OSError, WebDriverError):
                pass
            self._session = None
        try:
            os.killpg(self._driver.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._driver.wait()
