#!/usr/bin/env python3
"""Drives headless Chromium through the preference centre (WebTests' browser test), stdlib only.

usage: browser_preferences.py CHROMIUM URL SCREENSHOT.png UNTICK_VALUE

Starts Chromium with --remote-debugging-pipe (DevTools protocol as NUL-separated JSON on fds 3 and 4, so no
websocket is needed), loads URL, unticks the checkbox whose value is UNTICK_VALUE (e.g. "sms:marketing") by
clicking its label, clicks "Save preferences", waits for the page that comes back, stores a PNG screenshot and
prints one JSON line: {"status": <text of the status region>, "checked": [values still ticked]}.
Exits non-zero with a message on stderr when anything goes wrong.
"""
import base64
import json
import os
import subprocess
import sys
import tempfile
import time

DEADLINE_SECONDS = 60


def main():
    chromium, url, screenshot, untick = sys.argv[1:5]
    to_chrome_r, to_chrome_w = os.pipe()
    from_chrome_r, from_chrome_w = os.pipe()
    profile = tempfile.mkdtemp(prefix="nurture-chromium-")

    def child_fds():
        # Chromium reads commands on fd 3 and writes replies on fd 4; move the pipe ends out of the way first so
        # neither dup2 clobbers the other, and so both end up inheritable.
        high_r = os.dup2(to_chrome_r, 100)
        high_w = os.dup2(from_chrome_w, 101)
        os.dup2(high_r, 3)
        os.dup2(high_w, 4)

    proc = subprocess.Popen(
        [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--mute-audio",
         "--user-data-dir=" + profile, "--window-size=390,844", "--remote-debugging-pipe", "about:blank"],
        preexec_fn=child_fds, close_fds=False,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(to_chrome_r)
    os.close(from_chrome_w)
    writer = os.fdopen(to_chrome_w, "wb", buffering=0)
    reader = os.fdopen(from_chrome_r, "rb", buffering=0)
    buffered = b""
    next_id = [0]
    events = []
    deadline = time.monotonic() + DEADLINE_SECONDS

    def read_message():
        nonlocal buffered
        while b"\0" not in buffered:
            if time.monotonic() > deadline:
                raise RuntimeError("timed out waiting for Chromium")
            chunk = reader.read(65536)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe (is it installed and able to start?)")
            buffered += chunk
        raw, buffered = buffered.split(b"\0", 1)
        return json.loads(raw)

    def send(method, params=None, session=None):
        next_id[0] += 1
        message = {"id": next_id[0], "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        writer.write(json.dumps(message).encode() + b"\0")
        while True:
            reply = read_message()
            if reply.get("id") == next_id[0]:
                if "error" in reply:
                    raise RuntimeError("%s failed: %s" % (method, reply["error"]))
                return reply.get("result", {})
            events.append(reply)

    def wait_event(name, session):
        while True:
            for i, e in enumerate(events):
                if e.get("method") == name and e.get("sessionId") == session:
                    del events[: i + 1]
                    return e
            events.append(read_message())

    def evaluate(expression, session):
        result = send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session)
        if "exceptionDetails" in result:
            raise RuntimeError("script failed: %s" % result["exceptionDetails"])
        return result.get("result", {}).get("value")

    try:
        target = send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        send("Page.enable", {}, session)
        send("Page.navigate", {"url": url}, session)
        wait_event("Page.loadEventFired", session)
        found = evaluate(
            "(() => { const box = document.querySelector('input[type=checkbox][value=\"%s\"]');"
            " if (!box) return 'missing'; if (!box.checked) return 'unticked already';"
            " document.querySelector('label[for=\"' + box.id + '\"]').click();"
            " if (box.checked) return 'label click did not untick';"
            " document.querySelector('button[name=action][value=save]').click(); return 'ok'; })()" % untick,
            session)
        if found != "ok":
            raise RuntimeError("checkbox %s: %s" % (untick, found))
        wait_event("Page.loadEventFired", session)
        state = evaluate(
            "JSON.stringify({status: (document.getElementById('status') || {}).textContent || null,"
            " checked: Array.from(document.querySelectorAll('input[type=checkbox]:checked')).map(b => b.value),"
            " width: document.documentElement.scrollWidth, viewport: window.innerWidth})",
            session)
        shot = send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session)
        with open(screenshot, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        print(state)
        try:
            send("Browser.close")
        except Exception:
            pass
    except Exception as e:  # noqa: BLE001 - report anything to the Swift test
        print("browser test failed: %s" % e, file=sys.stderr)
        proc.kill()
        sys.exit(1)
    finally:
        try:
            proc.wait(timeout=10)
        except Exception:
            proc.kill()


if __name__ == "__main__":
    main()
