#!/usr/bin/env python3
"""HTTP sink for tests (TestSupport): records every request and answers by path.

usage: http_sink.py PORT LOGFILE

Each request is appended to LOGFILE as one JSON line:
  {"method", "path", "headers": [[name, value], ...], "body_b64", "client_port"}

Paths:
  /status/NNN  answers status NNN with body "status NNN"
  /slow/MS     sleeps MS milliseconds, then answers 200 "slow"
  /echo        answers 200 with the request body as the body, the request method as X-Echo-Method and each
               request header as X-Echo-<Name>
  /retry-after/NNN/SECONDS  answers status NNN with header Retry-After: SECONDS
  /batch-results  answers 200 {"results": [...]} for a {"messages": [...]} body: "rejected" (error "bad recipient")
               for ids containing "bad", no entry for ids containing "missing", "accepted" (message_id "m-<id>") otherwise
  /provider-id answers 200 {"message_id": "prov-1"}
  anything else answers 200 "ok"
"""
import base64
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Sink(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    log_lock = threading.Lock()
    log_file = None

    def log_message(self, format, *args):  # quiet
        pass

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        record = {
            "method": self.command,
            "path": self.path,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body_b64": base64.b64encode(body).decode("ascii"),
            "client_port": self.client_address[1],
        }
        with Handler.log_lock:
            Handler.log_file.write(json.dumps(record) + "\n")
            Handler.log_file.flush()

        status, extra, payload = 200, [], b"ok"
        parts = self.path.split("?")[0].strip("/").split("/")
        if parts[0] == "status" and len(parts) > 1:
            status = int(parts[1])
            payload = f"status {status}".encode()
        elif parts[0] == "slow" and len(parts) > 1:
            time.sleep(int(parts[1]) / 1000.0)
            payload = b"slow"
        elif parts[0] == "retry-after" and len(parts) > 2:
            status = int(parts[1])
            extra.append(("Retry-After", parts[2]))
            payload = f"status {status}".encode()
        elif parts[0] == "batch-results":
            results = []
            for m in json.loads(body or b"{}").get("messages", []):
                mid = m.get("id") if isinstance(m, dict) else None
                if mid is None or "missing" in mid:
                    continue
                if "bad" in mid:
                    results.append({"id": mid, "status": "rejected", "error": "bad recipient"})
                else:
                    results.append({"id": mid, "status": "accepted", "message_id": "m-" + mid})
            payload = json.dumps({"results": results}).encode()
        elif parts[0] == "provider-id":
            payload = b'{"message_id": "prov-1"}'
        elif parts[0] == "echo":
            payload = body
            extra.append(("X-Echo-Method", self.command))
            for k, v in self.headers.items():
                extra.append(("X-Echo-" + k, v))
        try:
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Content-Type", "application/octet-stream")
            for k, v in extra:
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = handle_any


def exit_with_parent(max_seconds=600):
    """Never outlive the test process that started us (nor run longer than max_seconds)."""
    parent, started = os.getppid(), time.monotonic()

    def watch():
        while os.getppid() == parent and time.monotonic() - started < max_seconds:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def main():
    # A child of a test thread inherits its signal mask (SIGTERM/SIGINT blocked): unblock so they work.
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    exit_with_parent()
    port, log_path = int(sys.argv[1]), sys.argv[2]
    Handler.log_file = open(log_path, "a", encoding="utf-8")
    server = Sink(("127.0.0.1", port), Handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
