"""The ``smtp-core`` command: serve on every backend, TLS and AUTH from the
command line, and send; each server started and stopped here on 127.0.0.1."""

from __future__ import annotations

import mailbox
import os
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from test_asyncio_server import free_port
from test_tls import CA, CERT

COMMAND = [sys.executable, "-m", "backends.cli"]


@contextmanager
def serving(*options: str) -> Iterator[tuple[int, list[str]]]:
    port = free_port()
    process = subprocess.Popen(
        [*COMMAND, "serve", "--port", str(port), *options], stdout=subprocess.PIPE, text=True
    )
    output: list[str] = []
    try:
        for _ in range(100):  # bounded: 10 s at most
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("smtp-core serve did not start listening")
        yield port, output
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=10)
        output.extend(out.splitlines())


@pytest.mark.parametrize("backend", ["asyncio", "trio", "anyio", "sync"])
def test_serve_on_every_backend(tmp_path: Path, backend: str):
    maildir = tmp_path / "md"
    with (
        serving("--backend", backend, "--maildir", str(maildir)) as (port, output),
        smtplib.SMTP("127.0.0.1", port, timeout=10) as client,
    ):
        client.sendmail("a@example.org", ["b@example.org"], b"Subject: x\r\n\r\nhi\r\n")
    assert len(list(mailbox.Maildir(str(maildir)))) == 1
    assert any(line.startswith("stored ") for line in output)


def test_send_with_starttls_and_auth_to_serve(tmp_path: Path):
    """``send`` with --starttls and --user against ``serve`` with a
    certificate and an auth file; prints each recipient's outcome."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    CERT.cert_chain_pems[0].write_to_path(str(cert))
    CERT.private_key_pem.write_to_path(str(key))
    ca = tmp_path / "ca.pem"
    CA.cert_pem.write_to_path(str(ca))
    (tmp_path / "users").write_text("ann:s3cret\n", encoding="utf-8")
    maildir = tmp_path / "md"
    message = tmp_path / "message.eml"
    message.write_bytes(
        b"From: ann@example.org\r\nTo: bob@example.org\r\nSubject: hi\r\n\r\nbody\r\n"
    )
    options = [
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
        "--auth-file",
        str(tmp_path / "users"),
    ]
    with serving("--maildir", str(maildir), *options) as (port, _):
        env = {**os.environ, "SMTP_CORE_PASSWORD": "s3cret", "SSL_CERT_FILE": str(ca)}
        sent = subprocess.run(
            [*COMMAND, "send", str(message), "--port", str(port), "--starttls", "--user", "ann"],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
        )
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.strip().startswith("<bob@example.org>: 250")
    [stored] = list(mailbox.Maildir(str(maildir)))
    assert "with ESMTPS" in stored["Received"]


def test_serve_outside_the_main_thread_runs_without_signal_handling():
    """Only the main thread can take signals: ``smtp-core serve`` run from
    another thread (an application embedding it) serves without the SIGTERM
    handler instead of failing to start."""
    import asyncio
    import threading

    from backends.cli import _until_terminated

    served: list[bool] = []
    errors: list[BaseException] = []

    async def serve() -> None:
        served.append(True)

    def run() -> None:
        try:
            asyncio.run(_until_terminated(serve))
        except BaseException as error:  # reported below
            errors.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)
    assert errors == [] and served == [True]
