"""The chat page at `/` in a real headless Chromium, driven over the DevTools protocol (CDP).

A question is typed with real input events; the answer must appear piece by piece while it streams and end as
the model's greedy answer. A screenshot is kept in tests/artifacts/ (git-ignored).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from test_server_support import API_KEY, guarded_server, main_server, offline_greedy

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
QUESTION = "Who are you?"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium chromium-driver)"
)


class Page:
    """One browser tab over CDP: commands by id; events in between are ignored."""

    def __init__(self, ws):
        self.ws, self._id = ws, 0

    def send(self, method: str, **params) -> dict:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def js(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30):
        deadline = time.monotonic() + timeout
        while not (value := self.js(expression)):
            assert time.monotonic() < deadline, f"timed out waiting for {expression}"
            time.sleep(0.05)
        return value

    def type_text(self, element_id: str, text: str) -> None:
        self.js(f"document.getElementById({element_id!r}).focus()")
        self.send("Input.insertText", text=text)

    def press_enter(self) -> None:
        key = dict(key="Enter", code="Enter", windowsVirtualKeyCode=13, nativeVirtualKeyCode=13)
        self.send("Input.dispatchKeyEvent", type="keyDown", text="\r", **key)
        self.send("Input.dispatchKeyEvent", type="keyUp", **key)

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"]))


@pytest.fixture
def browser():
    """A fresh headless Chromium with its own profile; yields a function opening a tab at a URL."""
    from websockets.sync.client import connect

    profile = Path(tempfile.mkdtemp(prefix="conch-chromium-"))
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--remote-debugging-port=0",
        "--window-size=1000,700",
        "about:blank",
    ]
    proc = subprocess.Popen([CHROMIUM, *flags], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sockets = []
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            assert proc.poll() is None and time.monotonic() < deadline, "chromium did not start"
            time.sleep(0.1)
        port = port_file.read_text().split()[0]

        def open_tab(url: str) -> Page:
            target = next(
                t for t in httpx.get(f"http://127.0.0.1:{port}/json/list").json() if t["type"] == "page"
            )
            ws = connect(target["webSocketDebuggerUrl"], max_size=None, open_timeout=30)
            sockets.append(ws)
            page = Page(ws)
            page.send("Page.enable")
            page.send("Page.navigate", url=url)
            page.wait_for("document.readyState === 'complete' && document.getElementById('prompt') !== null")
            return page

        yield open_tab
    finally:
        for ws in sockets:
            ws.close()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)


def ask_and_watch(page: Page, max_tokens: int) -> tuple[str, set[int]]:
    """Type the question, press Enter; return the final answer and the lengths seen while it streamed."""
    page.js(f"document.getElementById('max-tokens').value = {max_tokens}")
    page.type_text("prompt", QUESTION)
    page.press_enter()
    answer = "document.querySelector('.msg.assistant:last-child')"
    page.wait_for(f"{answer} !== null")
    seen = set()
    deadline = time.monotonic() + 60
    while (state := page.js(f"{answer}.dataset.state")) == "streaming":
        seen.add(len(page.js(f"{answer}.textContent")))
        assert time.monotonic() < deadline, "the answer never finished"
    assert state == "done", page.js(f"{answer}.textContent")
    return page.js(f"{answer}.textContent"), seen


def test_chat_page_streams_the_answer(browser):
    server = main_server()
    page = browser(server.base_url + "/")
    page.wait_for("document.getElementById('model').options.length === 2")
    text, seen = ask_and_watch(page, 300)
    assert text == offline_greedy([{"role": "user", "content": QUESTION}], 300)
    partial = {n for n in seen if 0 < n < len(text)}
    assert len(partial) >= 2, f"the page showed no partial answers (lengths seen: {sorted(seen)})"
    assert page.js("document.querySelector('.msg.user').textContent") == QUESTION
    assert page.js("document.getElementById('status').textContent") == "done (length)"
    page.screenshot(ARTIFACTS / "chat_page.png")
    assert (ARTIFACTS / "chat_page.png").stat().st_size > 1000


def test_chat_page_asks_for_the_api_key(browser):
    server = guarded_server()
    page = browser(server.base_url + "/")
    page.wait_for("document.getElementById('status').textContent.includes('401')")
    page.type_text("api-key", API_KEY)
    page.js("document.getElementById('api-key').dispatchEvent(new Event('change'))")
    page.wait_for("document.getElementById('model').options.length === 1")
    text, _ = ask_and_watch(page, 20)
    assert text == offline_greedy([{"role": "user", "content": QUESTION}], 20)
    page.screenshot(ARTIFACTS / "chat_page_with_key.png")
