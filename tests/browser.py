"""Headless Chromium (Debian's `chromium`) driven over the DevTools protocol, for the report's page test.

What a test needs to know about a page: the console errors and exceptions it raised, every request it
made, values computed in it (element sizes, texts) at a given viewport width, and a screenshot.
websocket-client speaks the protocol; no other driver is involved (no chromedriver, no downloaded browser).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.system import require

# Each plot's axis labels, its legend's entries and the colours of their keys, and the colours of what it draws
# (plots.py's ids: {plot}-xlabel, -ylabel, -legend, -data-K), and those of the labels and legend drawn beyond the
# plot's edge (the SVG cuts them); a colour is an element's fill, else its stroke.
PLOTS = ("[...document.querySelectorAll('svg.plot')].map(svg => {const s = svg.getAttribute('aria-label');"
         " const part = id => svg.querySelector(`[id=\"${s}-${id}\"]`);"
         " const text = id => part(id) ? part(id).textContent.trim() : '';"
         " const drawn = e => [...e.querySelectorAll('path, use')].filter(p => !p.closest('defs'));"
         " const colour = e => {const c = getComputedStyle(e); return c.fill !== 'none' ? c.fill : c.stroke};"
         " const legend = part('legend');"
         " const box = svg.getBoundingClientRect(), within = e => {const r = e.getBoundingClientRect();"
         " return r.left >= box.left - 1 && r.right <= box.right + 1 && r.top >= box.top - 1"
         " && r.bottom <= box.bottom + 1};"
         " return {plot: s, x: text('xlabel'), y: text('ylabel'), cut: ['xlabel', 'ylabel', 'legend']"
         ".filter(id => part(id) && !within(part(id))),"
         " entries: legend ? [...legend.querySelectorAll('text')].map(t => t.textContent.trim()) : [],"
         " keys: legend ? [...new Set(drawn(legend).map(colour))] : [],"
         " series: [...new Set([...svg.querySelectorAll(`[id^=\"${s}-data-\"]`)].flatMap(drawn).map(colour))]}})")


def plot_faults(plots: list[dict]) -> list[str]:
    """What is wrong with each plot as PLOTS read it: an axis without a label, a label or legend cut at the plot's
    edge, a colour drawn that no legend entry names, a legend key for a colour not drawn, an entry without words."""
    faults = []
    for p in plots:
        faults += [f"{p['plot']}: no {axis} label" for axis in ("x", "y") if not p[axis]]
        faults += [f"{p['plot']}: {part} cut at the edge" for part in p["cut"]]
        if not p["series"] or sorted(p["keys"]) != sorted(p["series"]):
            faults.append(f"{p['plot']}: legend keys {p['keys']} but draws {p['series']}")
        if len(p["entries"]) != len(p["keys"]) or not all(p["entries"]):
            faults.append(f"{p['plot']}: legend entries {p['entries']} for keys {p['keys']}")
    return faults


FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
         "--disable-extensions", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--remote-debugging-port=0")


def chromium_or_skip() -> str:
    """The chromium executable, or skip (CI: fail) saying what to install."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    require(None if found else "chromium is missing: install Debian's chromium (make test does, as root)")
    try:
        import websocket  # noqa: F401
    except ImportError:
        require("websocket-client is missing: pip install -e '.[dev]'")
    return str(found)


@dataclass
class Page:
    """One tab of a running headless Chromium; events seen so far are kept in `events`."""

    socket: Any
    events: list[dict] = field(default_factory=list)
    _next: int = 0

    def send(self, method: str, **params: Any) -> dict:
        self._next += 1
        self.socket.send(json.dumps({"id": self._next, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self._next:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = next((e for e in self.events if e.get("method") == method), None)
            if seen:
                return seen
            self.socket.settimeout(max(0.1, deadline - time.monotonic()))
            self.events.append(json.loads(self.socket.recv()))
        raise TimeoutError(method)

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression in the page."""
        result = self.send("Runtime.evaluate", expression=f"JSON.stringify({expression})", returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return json.loads(result["result"]["value"])

    def open(self, url: str) -> None:
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")
        self.send("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def width(self, pixels: int, height: int = 900) -> None:
        """Lay the page out as on a screen `pixels` wide (a phone at 400)."""
        self.send("Emulation.setDeviceMetricsOverride", width=pixels, height=height, deviceScaleFactor=1,
                  mobile=pixels < 600)

    def screenshot(self, path: Path) -> Path:
        shot = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def pdf(self, path: Path) -> Path:
        """The page as printed (print CSS applies), to `path`."""
        path.write_bytes(base64.b64decode(self.send("Page.printToPDF", printBackground=False)["data"]))
        return path

    def media(self, kind: str) -> None:
        """Apply the CSS of `kind` ('print', 'screen') to the page as it is laid out now."""
        self.send("Emulation.setEmulatedMedia", media=kind)

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and browser log errors (CSP violations, failed loads)."""
        found = []
        for e in self.events:
            params = e.get("params", {})
            if e.get("method") == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(" ".join(str(a.get("value", a.get("description"))) for a in params.get("args", [])))
            elif e.get("method") == "Runtime.exceptionThrown":
                found.append(str(params.get("exceptionDetails", {}).get("text")))
            elif e.get("method") == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                found.append(params["entry"].get("text", ""))
        return found

    def requests(self) -> list[str]:
        """The URL of every request the page made (its own navigation included)."""
        return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]


class Chromium:
    """A headless Chromium with its own throw-away profile; `with Chromium(exe, dir) as page:`."""

    def __init__(self, executable: str, profile: Path) -> None:
        self.executable, self.profile = executable, profile

    def __enter__(self) -> Page:
        import websocket

        self.process = subprocess.Popen([self.executable, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            port = self._port()
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
                tab = next(t for t in json.load(answer) if t.get("type") == "page")
            # suppress_origin: Chromium refuses DevTools websockets whose Origin it was not told to allow.
            socket = websocket.create_connection(tab["webSocketDebuggerUrl"], timeout=30, suppress_origin=True)
        except BaseException:
            self._stop()
            raise
        self.page = Page(socket)
        return self.page

    def _port(self, timeout: float = 60) -> int:
        marker, deadline = self.profile / "DevToolsActivePort", time.monotonic() + timeout
        while time.monotonic() < deadline:
            if marker.is_file() and marker.read_text().strip():
                return int(marker.read_text().split()[0])
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.process.returncode} before it listened")
            time.sleep(0.1)
        raise TimeoutError("chromium did not open its DevTools port")

    def __exit__(self, *exc: object) -> None:
        try:
            self.page.socket.close()
        finally:
            self._stop()

    def _stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
