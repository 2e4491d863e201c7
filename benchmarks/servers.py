"""Server throughput against peers, driven by Postfix's smtp-source; and memory.

Run from the repository root::

    .venv/bin/python benchmarks/servers.py              # full run (a few minutes)
    .venv/bin/python benchmarks/servers.py --quick      # smoke run (~30 s)
    .venv/bin/python benchmarks/servers.py --memory     # 1 GiB message: peak RSS
    .venv/bin/python benchmarks/servers.py --profile asyncio --cell 1k/8

Throughput: every server under test is started once, in its own process, on
127.0.0.1. Each cell (message size x connections) is driven by::

    smtp-source -d -s CONNECTIONS -m MESSAGES -l SIZE \\
        -f a@example.org -t b@example.org 127.0.0.1:PORT

``-d`` keeps each of the CONNECTIONS sessions open for its share of the
MESSAGES (smtp-source does not pipeline: every command waits for its reply).
The cell ``1k/8/new``, run only when ``--cells`` names it, leaves ``-d`` out:
each message then comes over a new connection (greeting, HELO, QUIT).
For each (server, cell) an untimed probe run, which is also the warm-up,
picks MESSAGES so that a run takes about ``--seconds`` (default 1.5 s); then
``--repeat`` timed runs (default 3) are made, interleaved with the other
servers' runs of the same cell so that drift hits everyone alike. A figure is
the median msgs/s over the wall time of the smtp-source process. The server
process's CPU time over the same runs (utime + stime from /proc) is given per
message as well.

Memory (``--memory``): ``smtp-core serve`` (asyncio unless ``--backend``
says otherwise, default Maildir handler storing into a temporary directory,
``--max-size 0`` i.e. no limit) receives one message of ``--memory-size``
(default 1 GiB) from a raw-socket sender that streams a generated body (lines
of 64 octets, none starting with a dot) in 1 MiB writes. /proc/PID/status is
polled while it runs; the server's VmHWM (peak resident set) is the figure.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import pstats
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
SMTP_SOURCE = "/usr/sbin/smtp-source"
SMTP_SINK = "/usr/sbin/smtp-sink"
HOST = "127.0.0.1"
KIB = 1024
MIB = 1024 * KIB
SENDER = "a@example.org"
RECIPIENT = "b@example.org"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ----------------------------------------------------------------- processes


def free_port() -> int:
    """A port nobody listens on now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def smtp_sink_argv(port: int) -> list[str]:
    """Postfix's smtp-sink (it must drop privileges when started as root)."""
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    return [SMTP_SINK, *user, f"{HOST}:{port}", "256"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def proc_status(pid: int) -> dict[str, int]:
    """The kB figures of /proc/PID/status (VmRSS, VmHWM, ...), in octets."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            name, _, value = line.partition(":")
            parts = value.split()
            if len(parts) == 2 and parts[1] == "kB":
                out[name] = int(parts[0]) * 1024
    return out


class Server:
    """A server process listening on ``port``, stopped on exit (context manager)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        port: int,
        *,
        env: dict[str, str] | None = None,
        ready_timeout: float = 20.0,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.port = port
        self.env = env
        self.ready_timeout = ready_timeout
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> Server:
        self.proc = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early: {self.output()}")
            if greets(self.port):
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not greet within {self.ready_timeout} s")
            time.sleep(0.05)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()[-2000:].decode(errors="replace")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """SIGINT (lets a profiler write its file), then SIGTERM, then SIGKILL."""
        proc = self.proc
        if proc is None:
            return
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            if proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        proc.wait(timeout=10)
        self.log.close()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def greets(port: int, timeout: float = 2.0) -> bool:
    """Whether something on ``port`` answers 220 (then it is sent QUIT)."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            greeting = b""
            while b"\n" not in greeting and len(greeting) < 4096:
                data = sock.recv(4096)
                if not data:
                    return False
                greeting += data
            sock.sendall(b"QUIT\r\n")
            with contextlib.suppress(OSError):
                sock.recv(4096)
            return greeting.startswith(b"220")
    except OSError:
        return False


@contextlib.contextmanager
def running(servers: Sequence[Server]) -> Iterator[None]:
    """Start them all; stop every one that started, whatever happens."""
    started: list[Server] = []
    try:
        for server in servers:
            started.append(server)
            server.start()
        yield
    finally:
        for server in reversed(started):
            server.stop()


# -------------------------------------------------------------------- cells


@dataclass(frozen=True)
class Cell:
    size: int
    connections: int
    reconnect: bool = False  # a new connection for every message (no -d)

    @property
    def label(self) -> str:
        return f"{self.size // KIB}k/{self.connections}{'/new' if self.reconnect else ''}"

    @property
    def title(self) -> str:
        return f"{self.size // KIB} KiB x{self.connections}{' new' if self.reconnect else ''}"


CELLS = (Cell(KIB, 1), Cell(KIB, 8), Cell(100 * KIB, 1), Cell(100 * KIB, 8))
# Only when asked for (--cells 1k/8/new): most clients send one message a
# connection, so this shows what a session's set-up costs. No target covers it.
EXTRA_CELLS = (Cell(KIB, 8, reconnect=True),)


@dataclass
class Figures:
    """The timed runs of one (subject, cell)."""

    count: int = 0
    rates: list[float] = field(default_factory=list)
    cpu_per_message: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def rate(self) -> float | None:
        return statistics.median(self.rates) if self.rates and self.error is None else None

    @property
    def cpu(self) -> float | None:
        ok = self.cpu_per_message and self.error is None
        return statistics.median(self.cpu_per_message) if ok else None


def calibrate(run: Callable[[int], float], step: int, seconds: float, cap: int) -> int:
    """A message count (a multiple of ``step``) whose run takes about ``seconds``
    beyond any fixed cost per run (connecting, a stalled SYN...): the count is
    grown until a run takes a while, then doubled once, and the marginal rate
    between the two runs decides. ``run(count)`` returns the elapsed time; these
    probe runs are also the warm-up."""
    count = step * 25
    while True:
        elapsed = run(count)
        if elapsed >= min(0.3, seconds / 2) or count >= cap:
            break
        count = min(cap, count * 4)
    double = min(cap, count * 2)
    elapsed2 = run(double) if double > count else elapsed
    average = double / max(elapsed2, 1e-6)
    marginal = (double - count) / max(elapsed2 - elapsed, 1e-6) if double > count else average
    rate = min(max(marginal, average), 4 * average)
    wanted = int(rate * seconds)
    return max(step * 10, min(cap, wanted // step * step))


# ------------------------------------------------------------ server matrix


@dataclass(frozen=True)
class Subject:
    key: str
    name: str
    argv: Callable[[int], list[str]]


def _smtp_core(backend: str) -> Callable[[int], list[str]]:
    def argv(port: int) -> list[str]:
        cli = [PYTHON, "-m", "backends.cli", "serve", "--host", HOST, "--port", str(port)]
        return [*cli, "--sink", "--backend", backend]

    return argv


SUBJECTS = (
    Subject("asyncio", "smtp-core asyncio", _smtp_core("asyncio")),
    Subject("sync", "smtp-core sync", _smtp_core("sync")),
    Subject("trio", "smtp-core trio", _smtp_core("trio")),
    Subject("anyio", "smtp-core anyio", _smtp_core("anyio")),
    Subject(
        "aiosmtpd",
        "aiosmtpd (Sink)",
        lambda port: [
            *(PYTHON, "-m", "aiosmtpd", "-n", "-l", f"{HOST}:{port}"),
            *("-c", "aiosmtpd.handlers.Sink"),
        ],
    ),
    Subject(
        "bare",
        "bare asyncio sink",
        lambda port: [PYTHON, str(HERE / "bare_sink.py"), "--host", HOST, "--port", str(port)],
    ),
    Subject(
        "bare-driver",
        "asyncio backend, bare driver",
        lambda port: [PYTHON, str(HERE / "bare_driver.py"), "--host", HOST, "--port", str(port)],
    ),
    Subject("smtp-sink", "Postfix smtp-sink", smtp_sink_argv),
)


def smtp_source(port: int, cell: Cell, count: int, timeout: float) -> float:
    """Run smtp-source once; its wall time. Raises on any failure."""
    argv = [
        SMTP_SOURCE,
        *(() if cell.reconnect else ("-d",)),
        *("-s", str(cell.connections), "-m", str(count)),
        *("-l", str(cell.size), "-f", SENDER, "-t", RECIPIENT, f"{HOST}:{port}"),
    ]
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(
            f"smtp-source exited {done.returncode}: {done.stderr.decode(errors='replace')[-500:]}"
        )
    return elapsed


def _source_run(port: int, cell: Cell, timeout: float, count: int) -> float:
    return smtp_source(port, cell, count, timeout)


def measure(
    subjects: Sequence[Subject], cells: Sequence[Cell], seconds: float, repeat: int, cap: int
) -> dict[tuple[str, Cell], Figures]:
    servers: dict[str, Server] = {}
    for subject in subjects:
        port = free_port()
        servers[subject.key] = Server(subject.name, subject.argv(port), port)
    results = {(s.key, c): Figures() for s in subjects for c in cells}
    timeout = max(60.0, seconds * 40)
    with running(list(servers.values())):
        for cell in cells:
            for subject in subjects:
                server, figures = servers[subject.key], results[subject.key, cell]
                try:
                    figures.count = calibrate(
                        partial(_source_run, server.port, cell, timeout),
                        cell.connections,
                        seconds,
                        cap,
                    )
                except (RuntimeError, subprocess.TimeoutExpired) as error:
                    figures.error = str(error)
                print(
                    f"  calibrated {subject.name:<20} {cell.title:<12} {figures.count} messages",
                    file=sys.stderr,
                    flush=True,
                )
        for round_ in range(repeat):
            print(f"  round {round_ + 1}/{repeat}", file=sys.stderr, flush=True)
            for cell in cells:
                for subject in subjects:
                    server, figures = servers[subject.key], results[subject.key, cell]
                    if figures.error is not None:
                        continue
                    if not server.alive():
                        figures.error = f"server died: {server.output()}"
                        continue
                    try:
                        cpu = cpu_seconds(server.pid)
                        elapsed = smtp_source(server.port, cell, figures.count, timeout)
                        cpu = cpu_seconds(server.pid) - cpu
                    except (RuntimeError, subprocess.TimeoutExpired, OSError) as error:
                        figures.error = str(error)
                        continue
                    figures.rates.append(figures.count / elapsed)
                    figures.cpu_per_message.append(cpu / figures.count)
    return results


def pick_cells(parser: argparse.ArgumentParser, wanted: str | None) -> list[Cell]:
    """The cells named in ``wanted`` (labels like 1k/8), or all of them."""
    if not wanted:
        return list(CELLS)
    by_label = {c.label: c for c in (*CELLS, *EXTRA_CELLS)}
    unknown = [w for w in wanted.split(",") if w not in by_label]
    if unknown:
        parser.error(f"unknown cells {unknown}: choose among {', '.join(by_label)}")
    return [by_label[w] for w in wanted.split(",")]


# ------------------------------------------------------------------- output


def table(
    title: str,
    rows: Sequence[str],
    cells: Sequence[Cell],
    value: Callable[[str, Cell], str],
    first: str = "server",
) -> None:
    width = max(len(first), *(len(r) for r in rows))
    print(f"\n{title}")
    print(f"{first:<{width}}  " + "  ".join(f"{c.title:>12}" for c in cells))
    for row in rows:
        print(f"{row:<{width}}  " + "  ".join(f"{value(row, c):>12}" for c in cells))


def environment() -> str:
    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="ascii") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    return (
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs ({cpu})"
    )


def ratio(a: float | None, b: float | None, fmt: str = "{:.2f}x") -> str:
    return fmt.format(a / b) if a is not None and b else "-"


def report(
    subjects: Sequence[Subject],
    cells: Sequence[Cell],
    results: dict[tuple[str, Cell], Figures],
    repeat: int,
) -> list[str]:
    names = {s.key: s.name for s in subjects}
    by_name = {s.name: s.key for s in subjects}
    keys = [s.key for s in subjects]

    def rate(key: str, cell: Cell) -> float | None:
        return results[key, cell].rate if (key, cell) in results else None

    def show_rate(name: str, cell: Cell) -> str:
        figures = results[by_name[name], cell]
        return "FAILED" if figures.error else f"{figures.rate or 0:,.0f}"

    print(f"\nserver messages/s, median of {repeat} (smtp-source, message count per cell):")
    table(
        "msgs/s",
        [names[k] for k in keys],
        cells,
        show_rate,
    )
    table(
        "messages per run",
        [names[k] for k in keys],
        cells,
        lambda n, c: f"{results[by_name[n], c].count:,}",
    )
    if "aiosmtpd" in names:
        table(
            "ratio to aiosmtpd",
            [names[k] for k in keys],
            cells,
            lambda n, c: ratio(rate(by_name[n], c), rate("aiosmtpd", c)),
        )
    if "bare" in names:
        table(
            "ratio to the bare asyncio sink",
            [names[k] for k in keys],
            cells,
            lambda n, c: ratio(rate(by_name[n], c), rate("bare", c), "{:.0%}"),
        )

    def show_cpu(name: str, cell: Cell) -> str:
        cpu = results[by_name[name], cell].cpu
        return "-" if cpu is None else f"{cpu * 1e6:,.0f}"

    table("server CPU time per message (us, user+sys)", [names[k] for k in keys], cells, show_cpu)
    for key in keys:
        for cell in cells:
            error = results[key, cell].error
            if error:
                print(f"\n{names[key]} {cell.title} FAILED: {error}")
    return targets(keys, cells, rate)


def targets(
    keys: Sequence[str], cells: Sequence[Cell], rate: Callable[[str, Cell], float | None]
) -> list[str]:
    """Print the project's targets, PASS or MISS; return the missed ones."""
    checks: list[tuple[str, float | None, float]] = []
    for cell in cells:
        if cell.reconnect:
            continue  # no target covers it
        if "asyncio" in keys and "aiosmtpd" in keys and cell.connections == 8:
            checks.append(
                (
                    f"asyncio >= 4x aiosmtpd, {cell.title}",
                    _div(rate, "asyncio", "aiosmtpd", cell),
                    4,
                )
            )
        if "asyncio" in keys and "bare" in keys:
            checks.append(
                (
                    f"asyncio >= 70% bare sink, {cell.title}",
                    _div(rate, "asyncio", "bare", cell),
                    0.7,
                )
            )
        for backend in ("trio", "sync"):
            if backend in keys and "aiosmtpd" in keys:
                checks.append(
                    (
                        f"{backend} >= 2x aiosmtpd, {cell.title}",
                        _div(rate, backend, "aiosmtpd", cell),
                        2,
                    )
                )
    missed: list[str] = []
    print("\ntargets")
    for text, value, goal in checks:
        ok = value is not None and value >= goal
        shown = "-" if value is None else f"{value:.2f}"
        print(f"  {'PASS' if ok else 'MISS'}  {text:<40} measured {shown}")
        if not ok:
            missed.append(text)
    return missed


def _div(rate: Callable[[str, Cell], float | None], a: str, b: str, cell: Cell) -> float | None:
    x, y = rate(a, cell), rate(b, cell)
    return x / y if x is not None and y else None


# ------------------------------------------------------------------ profile


def profile(backend: str, cell: Cell, seconds: float, top: int, save: str | None) -> None:
    """The smtp-core server under cProfile while smtp-source drives ``cell``.

    asyncio, trio and anyio serve on one thread, which cProfile sees whole.
    The sync backend serves each connection on its own thread: there a small
    wrapper (run in the server process, not in the project's code) profiles
    every connection thread and merges the figures."""
    out = Path(tempfile.mkdtemp(prefix="smtp-core-profile-"))
    try:
        stats_file = out / "server.prof"
        port = free_port()
        if backend == "sync":
            argv = [PYTHON, "-c", _SYNC_PROFILER, str(stats_file), str(port)]
        else:
            argv = [
                *(PYTHON, "-m", "cProfile", "-o", str(stats_file)),
                *("-m", "backends.cli", "serve", "--host", HOST, "--port", str(port)),
                *("--sink", "--backend", backend),
            ]
        with Server(f"smtp-core {backend} (profiled)", argv, port) as server:
            count = calibrate(
                lambda n: smtp_source(port, cell, n, 300), cell.connections, seconds, 10**6
            )
            elapsed = smtp_source(port, cell, count, 300)
            print(
                f"profiled {server.name}, {cell.title}: {count / elapsed:,.0f} msgs/s "
                "under the profiler (the calibration runs are in the profile too)"
            )
        stats = pstats.Stats(str(stats_file))
        if save:
            shutil.copyfile(stats_file, save)
        layers(stats)
        stats.strip_dirs().sort_stats("tottime").print_stats(top)
        stats.sort_stats("cumulative").print_stats(top)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def layer_of(path: str, function: str) -> str:
    if "/smtp_core/" in path:
        return "smtp_core (the engine)"
    if "/backends/" in path:
        return "backends (session driver, adapters, handler)"
    for name in ("asyncio", "trio", "anyio", "selectors", "socketserver", "threading"):
        if f"/{name}/" in path or path.endswith(f"/{name}.py"):
            return f"{name} (the I/O library)"
    if path == "~":
        for call in ("send", "recv", "sendall", "poll", "select", "epoll"):
            if f"'{call}'" in function or f".{call}" in function:
                return "system calls (socket send/recv, epoll)"
        return "other built-ins (isinstance, bytes methods...)"
    if "importlib" in path or path.startswith("<frozen"):
        return "imports and start-up"
    return "other standard library"


def layers(stats: pstats.Stats) -> None:
    """Own time (tottime) summed by layer."""
    totals: dict[str, float] = {}
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, object]]
    raw = stats.stats  # type: ignore[attr-defined]
    for (path, _line, function), (_cc, _nc, own, _cum, _callers) in raw.items():
        layer = layer_of(path, function)
        totals[layer] = totals.get(layer, 0.0) + own
    whole = sum(totals.values()) or 1.0
    print("own time by layer")
    for layer, own in sorted(totals.items(), key=lambda item: -item[1]):
        print(f"  {own:8.3f} s {own / whole:6.1%}  {layer}")
    print()


_SYNC_PROFILER = """
import cProfile, sys, threading, pstats
import backends.sync as sync
from backends.maildir import SinkHandler
out, port = sys.argv[1], int(sys.argv[2])
profiles, lock, original = [], threading.Lock(), sync.handle_connection
def handle_connection(*args, **kwargs):
    prof = cProfile.Profile()
    prof.enable()
    try:
        return original(*args, **kwargs)
    finally:
        prof.disable()
        with lock:
            profiles.append(prof)
sync.handle_connection = handle_connection
try:
    sync.serve(SinkHandler(), "127.0.0.1", port)
except KeyboardInterrupt:
    pass
with lock:
    stats = pstats.Stats(*profiles) if profiles else None
if stats is not None:
    stats.dump_stats(out)
"""


# ------------------------------------------------------------------- memory


def body_piece() -> bytes:
    """1 MiB of 64-octet lines, none starting with a dot."""
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-+"
    lines = [(alphabet[i % 64 :] + alphabet[: i % 64])[:62] + b"\r\n" for i in range(MIB // 64)]
    piece = b"".join(lines)
    assert len(piece) == MIB and b"\n." not in piece and not piece.startswith(b".")
    return piece


def _read_reply(sock: socket.socket, pending: bytearray) -> bytes:
    """One whole (possibly multi-line) reply; ``pending`` holds what is left."""
    while True:
        end = 0
        while True:
            eol = pending.find(b"\n", end)
            if eol < 0:
                break
            line = bytes(pending[end : eol + 1])
            end = eol + 1
            if len(line) < 4 or line[3:4] != b"-":
                reply = bytes(pending[:end])
                del pending[:end]
                return reply
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"closed by the server after {bytes(pending)!r}")
        pending += data


def _expect(sock: socket.socket, pending: bytearray, code: bytes) -> bytes:
    reply = _read_reply(sock, pending)
    if not reply.startswith(code):
        raise RuntimeError(f"expected {code.decode()}, got {reply!r}")
    return reply


HEAD = f"From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: large\r\n\r\n".encode()


def stored_size(size: int) -> int:
    """What the Maildir file holds of a message from ``stream_message``, less
    the trace headers: the mailbox module stores lines ending in LF."""
    lines = HEAD.count(b"\r\n") + size // MIB * (MIB // 64)
    return len(HEAD) + size - lines


def stream_message(port: int, size: int) -> tuple[int, float, float]:
    """Send one message of ``size`` octets of body (whole MiB) in 1 MiB writes;
    the octets sent, the seconds to send them and to get the final reply."""
    piece = body_piece()
    head = HEAD
    with socket.create_connection((HOST, port), timeout=600) as sock:
        pending = bytearray()
        _expect(sock, pending, b"220")
        for command, code in (
            (b"EHLO bench.example\r\n", b"250"),
            (f"MAIL FROM:<{SENDER}>\r\n".encode(), b"250"),
            (f"RCPT TO:<{RECIPIENT}>\r\n".encode(), b"250"),
            (b"DATA\r\n", b"354"),
        ):
            sock.sendall(command)
            _expect(sock, pending, code)
        start = time.perf_counter()
        sock.sendall(head)
        sent = len(head)
        for _ in range(size // MIB):
            sock.sendall(piece)
            sent += MIB
        sock.sendall(b".\r\n")
        sent_at = time.perf_counter()
        _expect(sock, pending, b"250")
        done = time.perf_counter()
        sock.sendall(b"QUIT\r\n")
        _expect(sock, pending, b"221")
    return sent, sent_at - start, done - start


class Poller(threading.Thread):
    """Polls a process's VmRSS and VmHWM every ``interval`` s until stopped."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.stopping = threading.Event()
        self.max_rss = 0
        self.hwm = 0
        self.samples = 0

    def sample(self) -> None:
        with contextlib.suppress(OSError):
            status = proc_status(self.pid)
            self.max_rss = max(self.max_rss, status.get("VmRSS", 0))
            self.hwm = max(self.hwm, status.get("VmHWM", 0))
            self.samples += 1

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            self.sample()


def memory(backend: str, size: int) -> bool:
    """Peak RSS of ``smtp-core serve`` receiving one message of ``size``."""
    work = Path(tempfile.mkdtemp(prefix="smtp-core-memory-"))
    try:
        maildir = work / "maildir"
        spool = work / "spool"
        spool.mkdir()
        port = free_port()
        argv = [
            *(PYTHON, "-m", "backends.cli", "serve", "--host", HOST, "--port", str(port)),
            *("--backend", backend, "--maildir", str(maildir), "--max-size", "0"),
        ]
        env = dict(os.environ, TMPDIR=str(spool))  # the server's spool files go here too
        with Server(f"smtp-core {backend}", argv, port, env=env) as server:
            baseline = proc_status(server.pid)
            poller = Poller(server.pid)
            poller.start()
            try:
                sent, send_time, total_time = stream_message(port, size)
            finally:
                poller.sample()
                poller.stopping.set()
                poller.join(timeout=5)
            stored = [p.stat().st_size for p in (maildir / "new").iterdir()]
        trace = stored[0] - stored_size(size) if len(stored) == 1 else -1
        ok = 0 < trace < 1000  # Return-Path and Received
        limit = 100 * 10**6
        print(
            f"\nmemory: one {size / MIB:,.0f} MiB message into smtp-core serve --backend "
            f"{backend} (Maildir in a temporary directory, --max-size 0)"
        )
        print(environment())
        print(
            f"  body sent          {sent:,} octets in 1 MiB writes, {send_time:.1f} s "
            f"({sent / MIB / send_time:,.0f} MiB/s); final reply after {total_time:.1f} s"
        )
        print(
            f"  stored             {stored[0] if len(stored) == 1 else stored} octets: "
            f"the content with LF line ends plus {trace} octets of trace headers "
            f"({'ok' if ok else 'WRONG'})"
        )
        print(f"  RSS before         {baseline.get('VmRSS', 0) / MIB:,.1f} MiB")
        print(
            f"  peak RSS (VmHWM)   {poller.hwm / MIB:,.1f} MiB = {poller.hwm / 1e6:,.1f} MB "
            f"(largest VmRSS sample {poller.max_rss / MIB:,.1f} MiB, {poller.samples} samples)"
        )
        under = poller.hwm < limit
        print(f"  target < 100 MB    {'PASS' if under else 'MISS'}")
        return ok and under
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="server throughput and memory against peers")
    parser.add_argument("--quick", action="store_true", help="smoke run: short runs, 1 repeat")
    parser.add_argument("--repeat", type=int, help="timed runs per cell (default 3, quick 1)")
    parser.add_argument("--seconds", type=float, help="target run time (default 1.5, quick 0.2)")
    parser.add_argument(
        "--only", help="comma-separated subjects: " + ",".join(s.key for s in SUBJECTS)
    )
    parser.add_argument(
        "--cells",
        help="comma-separated cells (default the four): 1k/1,1k/8,100k/1,100k/8, also 1k/8/new",
    )
    parser.add_argument("--memory", action="store_true", help="the large-message memory test")
    parser.add_argument("--memory-size", type=int, help="MiB (default 1024, quick 64)")
    parser.add_argument("--backend", default="asyncio", help="smtp-core backend for --memory")
    parser.add_argument("--profile", metavar="BACKEND", help="cProfile this smtp-core server")
    parser.add_argument("--cell", default="1k/8", help="the cell for --profile, e.g. 100k/1")
    parser.add_argument("--top", type=int, default=25, help="functions shown by --profile")
    parser.add_argument("--profile-out", metavar="FILE", help="keep the --profile pstats file")
    args = parser.parse_args(argv)
    if args.memory:
        mib = args.memory_size or (64 if args.quick else 1024)
        return 0 if memory(args.backend, mib * MIB) else 1
    seconds = args.seconds or (0.2 if args.quick else 1.5)
    if args.profile:
        cell = next((c for c in CELLS if c.label == args.cell), None)
        if cell is None:
            parser.error(f"--cell is one of {', '.join(c.label for c in CELLS)}")
        profile(args.profile, cell, seconds, args.top, args.profile_out)
        return 0
    repeat = args.repeat or (1 if args.quick else 3)
    subjects = list(SUBJECTS)
    if args.only:
        wanted = args.only.split(",")
        subjects = [s for s in SUBJECTS if s.key in wanted]
    print(environment())
    print(
        f"smtp-source: {SMTP_SOURCE} -d -s CONNECTIONS -m COUNT -l SIZE; "
        f"~{seconds} s per run, {repeat} timed runs, all servers side by side"
    )
    cells = pick_cells(parser, args.cells)
    results = measure(subjects, cells, seconds, repeat, cap=10**6)
    report(subjects, cells, results, repeat)
    return 1 if any(f.error for f in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
