#!/usr/bin/env python3
"""SMTP sink for tests (TestSupport), on aiosmtpd (Debian python3-aiosmtpd).

usage: smtp_sink.py PORT LOGFILE [--auth USER:PASSWORD] [--reject-rcpt SUBSTRING:CODE]

Each accepted message is appended to LOGFILE as one JSON line:
  {"mail_from", "rcpt_tos", "data_b64", "peer_port", "login"}
--auth requires AUTH (PLAIN/LOGIN, allowed without TLS) with that user and password.
--reject-rcpt answers RCPT TO for addresses containing SUBSTRING with CODE (e.g. nobody:550, busy:451).
"""
import argparse
import logging
import base64
import json
import os
import signal
import threading
import time
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

REPLIES = {
    550: "550 5.1.1 Mailbox unavailable",
    551: "551 5.1.6 User not local",
    552: "552 5.2.2 Mailbox full",
    553: "553 5.1.3 Bad address",
    450: "450 4.2.1 Mailbox busy, try later",
    451: "451 4.3.0 Temporary failure, try later",
    452: "452 4.2.2 Mailbox full, try later",
}


class Handler:
    def __init__(self, log_path, rejects):
        self.log = open(log_path, "a", encoding="utf-8")
        self.lock = threading.Lock()
        self.rejects = rejects

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        for needle, code in self.rejects:
            if needle in address:
                return REPLIES.get(code, f"{code} Rejected")
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        login = None
        data = getattr(session, "auth_data", None)
        if isinstance(data, LoginPassword):
            login = data.login.decode("utf-8", "replace")
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "data_b64": base64.b64encode(envelope.original_content or envelope.content).decode("ascii"),
            "peer_port": session.peer[1] if session.peer else None,
            "login": login,
        }
        with self.lock:
            self.log.write(json.dumps(record) + "\n")
            self.log.flush()
        return "250 Message accepted"


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
    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("log")
    parser.add_argument("--auth")
    parser.add_argument("--reject-rcpt", action="append", default=[])
    args = parser.parse_args()
    rejects = []
    for item in args.reject_rcpt:
        needle, code = item.rsplit(":", 1)
        rejects.append((needle, int(code)))

    kwargs = {}
    if args.auth:
        user, password = args.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (isinstance(auth_data, LoginPassword)
                  and auth_data.login == user.encode() and auth_data.password == password.encode())
            return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

        kwargs.update(authenticator=authenticator, auth_required=True, auth_require_tls=False)

    controller = Controller(Handler(args.log, rejects), hostname="127.0.0.1", port=args.port,
                            ready_timeout=10, **kwargs)
    controller.start()
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
