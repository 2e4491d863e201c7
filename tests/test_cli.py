"""The ``smtp-core`` command: serve on every backend, TLS and AUTH from the
command line, and send; each server started and stopped here on 127.0.0.1."""

from __future__ import annotations

import errno
import mailbox
import os
import select
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
def serving(*options: str, errors: list[str] | None = None) -> Iterator[tuple[int, list[str]]]:
    """``smtp-core serve`` on a free port; yields it and a list that holds
    the lines printed once the server has stopped (stderr's in ``errors``)."""
    port = free_port()
    process = subprocess.Popen(
        [*COMMAND, "serve", "--port", str(port), *options],
        stdout=subprocess.PIPE,
        stderr=None if errors is None else subprocess.PIPE,
        text=True,
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
        out, err = process.communicate(timeout=10)
        output.extend(out.splitlines())
        if errors is not None:
            errors.extend(err.splitlines())


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

    from backends._running import until_terminated

    served: list[bool] = []
    errors: list[BaseException] = []

    async def serve() -> None:
        served.append(True)

    def run() -> None:
        try:
            asyncio.run(until_terminated(serve))
        except BaseException as error:  # reported below
            errors.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)
    assert errors == [] and served == [True]


def test_serve_fills_in_an_existing_empty_directory_as_the_maildir(tmp_path: Path):
    """A directory made beforehand (mkdir, a mounted volume) becomes the
    Maildir: ``mailbox`` makes tmp/new/cur only along with the directory
    itself, and without them every message got 451."""
    maildir = tmp_path / "md"
    maildir.mkdir()
    with (
        serving("--maildir", str(maildir)) as (port, _),
        smtplib.SMTP("127.0.0.1", port, timeout=10) as client,
    ):
        client.sendmail("a@example.org", ["b@example.org"], b"Subject: x\r\n\r\nhi\r\n")
    assert len(list(mailbox.Maildir(str(maildir), create=False))) == 1


def _fails(*arguments: str, code: int = 1) -> str:
    """Runs ``smtp-core`` expecting it to stop with ``code``; its stderr."""
    done = subprocess.run([*COMMAND, *arguments], capture_output=True, text=True, timeout=30)
    assert done.returncode == code, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    return done.stderr


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("maildir-file", "cannot use the Maildir {path}: {path} is not a directory"),
        ("cert-missing", "cannot load a certificate chain and its private key from {path}: "),
        ("cert-not-pem", "cannot load a certificate chain and its private key from {path}: "),
        ("auth-missing", "cannot read the auth file {path}: No such file or directory"),
        ("auth-no-colon", "{path} line 2: expected user:password"),
        ("hostname", "hostname must be one word"),
    ],
)
def test_serve_says_in_one_line_which_setting_it_cannot_use(
    tmp_path: Path, setting: str, expected: str
):
    path = tmp_path / "file"
    options = {
        "maildir-file": ["--maildir", str(path)],
        "cert-missing": ["--tls-cert", str(path)],
        "cert-not-pem": ["--tls-cert", str(path)],
        "auth-missing": ["--auth-file", str(path)],
        "auth-no-colon": ["--auth-file", str(path)],
        "hostname": ["--hostname", "two words"],
    }[setting]
    if setting != "cert-missing" and setting != "auth-missing":
        path.write_text("ann:s3cret\nbob\n", encoding="utf-8")
    stderr = _fails("serve", "--port", str(free_port()), *options)
    [line] = stderr.splitlines()
    assert line.startswith("smtp-core serve: ")
    assert expected.format(path=path) in line


@pytest.mark.parametrize("backend", ["asyncio", "trio", "anyio", "sync"])
def test_serve_on_a_port_in_use_says_so(backend: str):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        stderr = _fails("serve", "--sink", "--backend", backend, "--port", str(port))
    reason = os.strerror(errno.EADDRINUSE)
    assert stderr.strip() == f"smtp-core serve: cannot listen on 127.0.0.1:{port}: {reason}"


@pytest.mark.parametrize("backend", ["asyncio", "trio", "anyio", "sync"])
def test_serve_announces_itself_once_it_listens(tmp_path: Path, backend: str):
    """The first line is printed after the listening socket is open, so a
    script may connect as soon as it reads it (no retry loop here)."""
    port = free_port()
    process = subprocess.Popen(
        [*COMMAND, "serve", "--sink", "--backend", backend, "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 20)
        assert ready, "smtp-core serve printed nothing in 20 s"
        line = process.stdout.readline()
        assert line.startswith(f"smtp-core: SMTP on 127.0.0.1:{port} ({backend})")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as peer:
            assert peer.recv(100).startswith(b"220 ")
    finally:
        process.terminate()
        process.communicate(timeout=10)


@pytest.mark.parametrize(
    ("option", "arguments"),
    [
        ("--port", ["--port", "65536"]),
        ("--port", ["--port", "smtp"]),
        ("--require-tls needs --tls-cert", ["--require-tls"]),
        ("--implicit-tls needs --tls-cert", ["--implicit-tls"]),
        ("--tls-key needs --tls-cert", ["--tls-key", "key.pem"]),
    ],
)
def test_serve_refuses_options_that_cannot_work_as_usage_errors(option: str, arguments: list[str]):
    stderr = _fails("serve", "--sink", *arguments, code=2)
    assert "usage: smtp-core serve" in stderr and option in stderr


def test_send_says_what_the_envelope_lacks_or_what_it_cannot_read(tmp_path: Path):
    """Nothing is sent (no server listens here) and nothing is guessed: a
    message without From or Sender would otherwise go with the null reverse
    path, and one without recipients raised."""
    port = str(free_port())
    message = tmp_path / "message.eml"
    message.write_bytes(b"Subject: no envelope\r\n\r\nbody\r\n")
    stderr = _fails("send", str(message), "--port", port, "--to", "b@example.org")
    assert stderr.strip().startswith("smtp-core send: the message has no address in Sender")
    stderr = _fails("send", str(message), "--port", port, "--from", "a@example.org")
    assert stderr.strip().startswith("smtp-core send: the message has no address in To")
    stderr = _fails("send", str(tmp_path / "missing.eml"), "--port", port)
    assert stderr.strip() == (
        f"smtp-core send: cannot read {tmp_path / 'missing.eml'}: No such file or directory"
    )


def test_send_with_a_user_to_a_server_without_auth_says_so(tmp_path: Path):
    message = tmp_path / "message.eml"
    message.write_bytes(b"From: a@example.org\r\nTo: b@example.org\r\n\r\nbody\r\n")
    with serving("--sink") as (port, _):
        env = {**os.environ, "SMTP_CORE_PASSWORD": "x"}
        sent = subprocess.run(
            [*COMMAND, "send", str(message), "--port", str(port), "--user", "ann"],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
        )
    assert sent.returncode == 1
    assert sent.stderr.strip() == "smtp-core send: the server offers no AUTH"


def test_serve_says_on_stderr_why_a_message_got_451(tmp_path: Path):
    """The client only hears 451 4.3.0 when storing fails (here the Maildir's
    new/ is gone); the operator reads the reason on stderr."""
    maildir = tmp_path / "md"
    errors: list[str] = []
    with serving("--maildir", str(maildir), errors=errors) as (port, _):
        (maildir / "new").rmdir()
        (maildir / "new").write_text("not a directory", encoding="utf-8")
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            with pytest.raises(smtplib.SMTPDataError) as refused:
                client.sendmail("a@example.org", ["b@example.org"], b"Subject: x\r\n\r\nhi\r\n")
            assert refused.value.smtp_code == 451
            local = client.sock.getsockname()
    said = f"smtp-core serve: on_message raised; 451 4.3.0 to {local[0]}:{local[1]}"
    assert said in errors, errors
    assert errors[-1].startswith("NotADirectoryError"), errors
