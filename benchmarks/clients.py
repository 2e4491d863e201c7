"""Client throughput against peers, all sending to Postfix's smtp-sink.

Run from the repository root::

    .venv/bin/python benchmarks/clients.py            # full run (a few minutes)
    .venv/bin/python benchmarks/clients.py --quick    # smoke run (~30 s)

One smtp-sink (``smtp-sink 127.0.0.1:PORT 256``: it offers PIPELINING) takes
everything. Each cell is a message size (1 KiB, 100 KiB, headers included,
lines of 76 octets) and a number of connections: 8 means 8 concurrent
connections, each sending COUNT messages over one session (threads for the
blocking clients, tasks on one event loop for the asyncio ones). The clients:

- smtp-core sync: ``backends.sync.connect(...)``, then ``sendmail`` COUNT times
- smtp-core asyncio: ``await backends.asyncio.connect(...)``, then ``sendmail``
- smtplib: ``smtplib.SMTP(...)``, ``sendmail`` (no pipelining: 4 round trips)
- aiosmtplib: ``SMTP(...)``, ``connect``, ``sendmail`` (no pipelining either)
- bare client: benchmarks/bare_client.py, MAIL+RCPT+DATA pipelined, replies
  counted, not parsed (the ceiling)

Every run is a fresh worker process (this script with ``--worker``) so that
no client inherits another's threads, event loop or garbage; the worker times
from before the first connect to after the last QUIT (time.perf_counter) and
reports its own CPU time (getrusage) for the same span. For each (client,
cell) untimed probe runs, which are also the warm-up, choose COUNT so that a
run takes about ``--seconds``; then ``--repeat`` timed runs are interleaved
with the other clients' runs of the same cell. A figure is the median.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import resource
import smtplib
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from servers import (
    CELLS,
    HOST,
    PYTHON,
    RECIPIENT,
    ROOT,
    SENDER,
    Cell,
    Figures,
    Server,
    calibrate,
    environment,
    free_port,
    layers,
    pick_cells,
    ratio,
    smtp_sink_argv,
    table,
)

HERE = Path(__file__).resolve().parent


def message(size: int) -> bytes:
    """``size`` octets: a few headers, then lines of 74 letters + CRLF."""
    head = (
        f"From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: benchmark\r\n"
        "Message-ID: <bench@example.org>\r\n\r\n"
    ).encode()
    line = b"abcdefghijklmnopqrstuvwxyz" * 2 + b"ABCDEFGHIJKLMNOPQRSTUV" + b"\r\n"
    body = line * ((size - len(head)) // len(line) + 1)
    content = (head + body)[: size - 2] + b"\r\n"
    assert len(content) == size and b"\n." not in content
    return content


# ------------------------------------------------------------------ workers


# Set by --profile: each client thread then runs under its own profiler.
THREAD_PROFILES: list[cProfile.Profile] | None = None


def _threads(connections: int, work: Callable[[], None]) -> None:
    """``work`` on ``connections`` threads at once; re-raise the first failure."""
    errors: list[BaseException] = []

    def run() -> None:
        profiler = cProfile.Profile() if THREAD_PROFILES is not None else None
        try:
            if profiler is not None:
                profiler.enable()
            work()
        except BaseException as error:
            errors.append(error)
        finally:
            if profiler is not None:
                profiler.disable()
                assert THREAD_PROFILES is not None
                THREAD_PROFILES.append(profiler)

    threads = [threading.Thread(target=run) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    if any(thread.is_alive() for thread in threads):
        raise TimeoutError("a client thread did not finish in 600 s")
    if errors:
        raise errors[0]


def run_smtp_core_sync(port: int, content: bytes, count: int, connections: int) -> None:
    from backends import sync

    def work() -> None:
        with sync.connect(HOST, port, timeout=60) as client:
            for _ in range(count):
                result = client.sendmail(SENDER, [RECIPIENT], content)
                if result.refused:
                    raise RuntimeError(f"refused: {result.refused}")

    _threads(connections, work)


def run_smtplib(port: int, content: bytes, count: int, connections: int) -> None:
    def work() -> None:
        with smtplib.SMTP(HOST, port, timeout=60) as client:
            for _ in range(count):
                refused = client.sendmail(SENDER, [RECIPIENT], content)
                if refused:
                    raise RuntimeError(f"refused: {refused}")

    _threads(connections, work)


async def _smtp_core_asyncio(port: int, content: bytes, count: int, connections: int) -> None:
    from backends import asyncio as smtp_asyncio

    async def work() -> None:
        client = await smtp_asyncio.connect(HOST, port, timeout=60)
        async with client:
            for _ in range(count):
                result = await client.sendmail(SENDER, [RECIPIENT], content)
                if result.refused:
                    raise RuntimeError(f"refused: {result.refused}")

    await asyncio.wait_for(asyncio.gather(*(work() for _ in range(connections))), 600)


async def _aiosmtplib(port: int, content: bytes, count: int, connections: int) -> None:
    import aiosmtplib

    async def work() -> None:
        client = aiosmtplib.SMTP(hostname=HOST, port=port, start_tls=False, timeout=60)
        await client.connect()
        try:
            for _ in range(count):
                refused, _reply = await client.sendmail(SENDER, [RECIPIENT], content)
                if refused:
                    raise RuntimeError(f"refused: {refused}")
        finally:
            await client.quit()

    await asyncio.wait_for(asyncio.gather(*(work() for _ in range(connections))), 600)


async def _bare(port: int, content: bytes, count: int, connections: int) -> None:
    from bare_client import send_all

    sent = await send_all(HOST, port, content, count, connections, timeout=600)
    if sent != count * connections:
        raise RuntimeError(f"sent {sent} of {count * connections}")


Runner = Callable[[int, bytes, int, int], None]


def _on_loop(function: Callable[[int, bytes, int, int], Coroutine[Any, Any, None]]) -> Runner:
    def run(port: int, content: bytes, count: int, connections: int) -> None:
        asyncio.run(function(port, content, count, connections))

    return run


@dataclass(frozen=True)
class Subject:
    key: str
    name: str
    run: Runner


SUBJECTS = (
    Subject("sync", "smtp-core sync", run_smtp_core_sync),
    Subject("asyncio", "smtp-core asyncio", _on_loop(_smtp_core_asyncio)),
    Subject("smtplib", "smtplib", run_smtplib),
    Subject("aiosmtplib", "aiosmtplib", _on_loop(_aiosmtplib)),
    Subject("bare", "bare pipelining client", _on_loop(_bare)),
)


def worker(key: str, port: int, size: int, count: int, connections: int) -> None:
    """One timed run in this process; prints a JSON line with the figures."""
    subject = next(s for s in SUBJECTS if s.key == key)
    content = message(size)
    # Import what the client needs before the clock starts.
    if key in ("sync", "asyncio"):
        import backends.asyncio
        import backends.sync  # noqa: F401
    elif key == "aiosmtplib":
        import aiosmtplib  # noqa: F401
    elif key == "bare":
        import bare_client  # noqa: F401
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    subject.run(port, content, count, connections)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(json.dumps({"elapsed": elapsed, "cpu": cpu}))


def run_worker(key: str, port: int, cell: Cell, count: int, timeout: float) -> tuple[float, float]:
    """A worker process; its elapsed and CPU seconds. Raises on any failure."""
    argv = [PYTHON, str(Path(__file__).resolve()), "--worker", key, str(port)]
    argv += [str(cell.size), str(count), str(cell.connections)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{key} worker failed: {done.stderr.decode(errors='replace')[-800:]}")
    figures = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return float(figures["elapsed"]), float(figures["cpu"])


def measure(
    subjects: Sequence[Subject],
    cells: Sequence[Cell],
    port: int,
    seconds: float,
    repeat: int,
    sink: Server,
) -> dict[tuple[str, Cell], Figures]:
    results = {(s.key, c): Figures() for s in subjects for c in cells}
    timeout = max(120.0, seconds * 40)
    for cell in cells:
        for subject in subjects:
            figures = results[subject.key, cell]

            def probe(total: int, key: str = subject.key, cell: Cell = cell) -> float:
                return run_worker(key, port, cell, total // cell.connections, timeout)[0]

            try:
                figures.count = calibrate(probe, cell.connections, seconds, 10**6)
            except (RuntimeError, subprocess.TimeoutExpired) as error:
                figures.error = str(error)
            print(
                f"  calibrated {subject.name:<24} {cell.title:<12} {figures.count} messages",
                file=sys.stderr,
                flush=True,
            )
    for round_ in range(repeat):
        print(f"  round {round_ + 1}/{repeat}", file=sys.stderr, flush=True)
        for cell in cells:
            for subject in subjects:
                figures = results[subject.key, cell]
                if figures.error is not None:
                    continue
                if not sink.alive():
                    figures.error = f"smtp-sink died: {sink.output()}"
                    continue
                per_connection = figures.count // cell.connections
                try:
                    elapsed, cpu = run_worker(subject.key, port, cell, per_connection, timeout)
                except (RuntimeError, subprocess.TimeoutExpired) as error:
                    figures.error = str(error)
                    continue
                figures.rates.append(figures.count / elapsed)
                figures.cpu_per_message.append(cpu / figures.count)
    return results


def _ratio_to(
    rate: Callable[[str, Cell], float | None],
    key_of: dict[str, str],
    other: str,
    name: str,
    cell: Cell,
) -> str:
    return ratio(rate(key_of[name], cell), rate(other, cell))


def report(
    subjects: Sequence[Subject],
    cells: Sequence[Cell],
    results: dict[tuple[str, Cell], Figures],
    repeat: int,
) -> list[str]:
    names = [s.name for s in subjects]
    key_of = {s.name: s.key for s in subjects}

    def rate(key: str, cell: Cell) -> float | None:
        figures = results.get((key, cell))
        return figures.rate if figures is not None else None

    def show(name: str, cell: Cell) -> str:
        figures = results[key_of[name], cell]
        return "FAILED" if figures.error else f"{figures.rate or 0:,.0f}"

    print(f"\nclient messages/s to smtp-sink, median of {repeat}")
    table("msgs/s", names, cells, show, "client")
    table(
        "messages per run (all connections)",
        names,
        cells,
        lambda n, c: f"{results[key_of[n], c].count:,}",
        "client",
    )
    for key, title in (
        ("aiosmtplib", "ratio to aiosmtplib"),
        ("smtplib", "ratio to smtplib"),
        ("bare", "ratio to the bare pipelining client"),
    ):
        if key in key_of.values():
            table(
                title,
                names,
                cells,
                partial(_ratio_to, rate, key_of, key),
                "client",
            )

    def show_cpu(name: str, cell: Cell) -> str:
        cpu = results[key_of[name], cell].cpu
        return "-" if cpu is None else f"{cpu * 1e6:,.0f}"

    table("client CPU time per message (us, user+sys)", names, cells, show_cpu, "client")
    for subject in subjects:
        for cell in cells:
            error = results[subject.key, cell].error
            if error:
                print(f"\n{subject.name} {cell.title} FAILED: {error}")
    missed: list[str] = []
    print("\ntargets")
    for cell in cells:
        for other, goal, text in (
            ("aiosmtplib", 2.0, ">= 2x aiosmtplib"),
            ("smtplib", 1.0, ">= smtplib"),
        ):
            mine, theirs = rate("asyncio", cell), rate(other, cell)
            value = mine / theirs if mine is not None and theirs else None
            ok = value is not None and value >= goal
            label = f"asyncio client {text}, {cell.title}"
            shown = "-" if value is None else f"{value:.2f}"
            print(f"  {'PASS' if ok else 'MISS'}  {label:<44} measured {shown}")
            if not ok:
                missed.append(label)
    return missed


def profile(key: str, cell: Cell, seconds: float, top: int) -> None:
    """One client under cProfile (every thread of the blocking ones) for about
    ``seconds`` against smtp-sink; own time by layer, then the top functions."""
    global THREAD_PROFILES
    subject = next(s for s in SUBJECTS if s.key == key)
    content = message(cell.size)
    port = free_port()
    with Server("Postfix smtp-sink", smtp_sink_argv(port), port):
        count = calibrate(
            lambda total: run_worker(key, port, cell, total // cell.connections, 300)[0],
            cell.connections,
            seconds,
            10**6,
        )
        per_connection = count // cell.connections
        THREAD_PROFILES = []
        main_profile = cProfile.Profile()
        start = time.perf_counter()
        main_profile.enable()
        subject.run(port, content, per_connection, cell.connections)
        main_profile.disable()
        elapsed = time.perf_counter() - start
    print(
        f"profiled {subject.name}, {cell.title}: {count} messages, "
        f"{count / elapsed:,.0f} msgs/s under the profiler"
    )
    stats = pstats.Stats(main_profile, *THREAD_PROFILES)
    layers(stats)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="client throughput against peers")
    parser.add_argument("--quick", action="store_true", help="smoke run: short runs, 1 repeat")
    parser.add_argument("--repeat", type=int, help="timed runs per cell (default 3, quick 1)")
    parser.add_argument("--seconds", type=float, help="target run time (default 1.5, quick 0.2)")
    parser.add_argument(
        "--only", help="comma-separated clients: " + ",".join(s.key for s in SUBJECTS)
    )
    parser.add_argument("--cells", help="comma-separated cells (default all): 1k/1,1k/8,...")
    parser.add_argument("--profile", metavar="CLIENT", help="cProfile this client in-process")
    parser.add_argument("--cell", default="1k/8", help="the cell for --profile, e.g. 100k/1")
    parser.add_argument("--top", type=int, default=25, help="functions shown by --profile")
    parser.add_argument("--worker", nargs=5, metavar="ARG", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        key, port, size, count, connections = args.worker
        worker(key, int(port), int(size), int(count), int(connections))
        return 0
    seconds = args.seconds or (0.2 if args.quick else 1.5)
    if args.profile:
        cell = next((c for c in CELLS if c.label == args.cell), None)
        if cell is None:
            parser.error(f"--cell is one of {', '.join(c.label for c in CELLS)}")
        profile(args.profile, cell, seconds, args.top)
        return 0
    repeat = args.repeat or (1 if args.quick else 3)
    subjects = list(SUBJECTS)
    if args.only:
        subjects = [s for s in SUBJECTS if s.key in args.only.split(",")]
    print(environment())
    print(
        f"sink: Postfix smtp-sink; ~{seconds} s per run, {repeat} timed runs, "
        "a fresh process per run, all clients side by side"
    )
    cells = pick_cells(parser, args.cells)
    port = free_port()
    with Server("Postfix smtp-sink", smtp_sink_argv(port), port) as sink:
        results = measure(subjects, cells, port, seconds, repeat, sink)
    report(subjects, cells, results, repeat)
    return 1 if any(f.error for f in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
