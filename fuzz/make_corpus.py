"""Build the seed corpus of every fuzz target from the inputs the tests use.

Runs the example-based tests of the core (hypothesis tests are left out, so
the result is the same on every run) with smtp_core's entry points wrapped,
keeps what each test feeds them, turns each recording into the input layout
of the matching target (see _harness), adds the RFC examples the harness is
set up to accept (each SASL seed also with a verifier that says no), and
writes a few dozen seeds per target to
fuzz/corpus/<target>/, named by their SHA-1 as libFuzzer names its finds.
Seeds are picked so that different behaviours come first (the summary each
check returns); a recording on which a check fails is reported, not kept.

Run: .venv/bin/python fuzz/make_corpus.py
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FUZZ_DIR = Path(__file__).resolve().parent
ROOT = FUZZ_DIR.parent
CORPUS = FUZZ_DIR / "corpus"
SEEDS_PER_TARGET = 40
MAX_SEED_SIZE = 4096
# A recording that grows past this is a load test, not a seed.
MAX_RECORDING = 64 * 1024
TEST_FILES = (
    "test_address.py",
    "test_parameters.py",
    "test_sasl.py",
    "test_auth_sasl.py",
    "test_auth.py",
    "test_proxy.py",
    "test_proxy_server.py",
    "test_server.py",
    "test_client.py",
    "test_content.py",
    "test_bdat_lmtp.py",
    "test_starttls.py",
    "test_xclient.py",
    "test_robustness.py",
    "test_split_invariance.py",
)


def _deterministic_secrets() -> None:
    """Nonces the tests leave to ``secrets`` become a counter, so that the
    recorded SCRAM messages, and the corpus, are the same on every run. Done
    before smtp_core is imported: its defaults are bound at import."""
    counter = itertools.count()
    secrets.token_urlsafe = lambda nbytes=None: f"nonce{next(counter)}"
    secrets.token_bytes = lambda nbytes=None: bytes(nbytes or 32)


_deterministic_secrets()
sys.path.insert(0, str(FUZZ_DIR))

import _harness  # noqa: E402
import pytest  # noqa: E402

from smtp_core import (  # noqa: E402
    BareLinePolicy,
    ClientConfig,
    ClientConnection,
    ProxyParser,
    ServerConfig,
    ServerConnection,
    _address,
    _parameters,
    _readers,
    sasl,
)

ACCEPT_ALL = b"\x01\x01\x01\x01"


@dataclass
class _Stream:
    owner: object
    data: bytearray = field(default_factory=bytearray)
    too_long: bool = False

    def add(self, data: bytes) -> None:
        if len(self.data) + len(data) > MAX_RECORDING:
            self.too_long = True
        else:
            self.data += data


@dataclass
class _Recorder:
    """What the tests fed each entry point, per connection or mechanism."""

    servers: dict[int, _Stream] = field(default_factory=dict)
    clients: dict[int, _Stream] = field(default_factory=dict)
    proxies: dict[int, _Stream] = field(default_factory=dict)
    paths: list[str] = field(default_factory=list)
    parameters: list[str] = field(default_factory=list)
    mechanisms: dict[int, tuple[sasl.ServerMechanism, list[bytes | None]]] = field(
        default_factory=dict
    )

    def install(self) -> None:
        self._wrap_streams(ServerConnection, self.servers)
        self._wrap_streams(ClientConnection, self.clients)
        self._wrap_streams(ProxyParser, self.proxies)
        for module in (_address, _readers):
            for name in ("parse_forward_path", "parse_reverse_path"):
                if hasattr(module, name):
                    setattr(module, name, self._keep_text(getattr(module, name), self.paths))
        original_parse = _address.Address.parse.__func__  # type: ignore[attr-defined]

        def parse(cls: type, text: str) -> object:
            self.paths.append(text)
            return original_parse(cls, text)

        _address.Address.parse = classmethod(parse)  # type: ignore[assignment, method-assign]
        for module in (_parameters, _readers):
            for name in ("parse_mail_params", "parse_rcpt_params"):
                setattr(module, name, self._keep_text(getattr(module, name), self.parameters))
        self._wrap_mechanisms()

    @staticmethod
    def _keep_text(function: Callable[..., Any], into: list[str]) -> Callable[..., Any]:
        def wrapper(text: str, *args: Any, **kwargs: Any) -> Any:
            into.append(text)
            return function(text, *args, **kwargs)

        return wrapper

    @staticmethod
    def _wrap_streams(kind: Any, into: dict[int, _Stream]) -> None:
        original = kind.receive_data

        def receive_data(conn: object, data: bytes) -> None:
            stream = into.setdefault(id(conn), _Stream(conn))
            stream.add(bytes(data))
            original(conn, data)

        kind.receive_data = receive_data

    def _wrap_mechanisms(self) -> None:
        start, step = sasl.ServerMechanism.start, sasl.ServerMechanism.step
        mechanisms = self.mechanisms

        def recorded(mechanism: sasl.ServerMechanism) -> list[bytes | None]:
            return mechanisms.setdefault(id(mechanism), (mechanism, []))[1]

        def wrapped_start(mechanism: sasl.ServerMechanism, initial: bytes | None) -> sasl.Step:
            recorded(mechanism).append(initial)
            return start(mechanism, initial)

        def wrapped_step(mechanism: sasl.ServerMechanism, response: bytes) -> sasl.Step:
            recorded(mechanism).append(response)
            return step(mechanism, response)

        sasl.ServerMechanism.start = wrapped_start  # type: ignore[assignment, method-assign]
        sasl.ServerMechanism.step = wrapped_step  # type: ignore[assignment, method-assign]


class _SkipHypothesis:
    """Leaves out property tests: their inputs differ from run to run."""

    @staticmethod
    def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
        items[:] = [
            item
            for item in items
            if not getattr(getattr(item, "obj", None), "is_hypothesis_test", False)
        ]


def record() -> _Recorder:
    recorder = _Recorder()
    recorder.install()
    tests = [str(ROOT / "tests" / name) for name in TEST_FILES]
    arguments = ["-q", "-p", "no:cacheprovider", "--no-header", "-o", "addopts=", *tests]
    pytest.main(arguments, plugins=[_SkipHypothesis()])
    return recorder


# --------------------------------------------------------------------------
# Recordings to target inputs (the layouts are in _harness's docstrings)


def _server_control(config: ServerConfig, seed: int) -> bytes:
    policy = {
        BareLinePolicy.REJECT: 0,
        BareLinePolicy.NORMALIZE: 1,
        BareLinePolicy.ALLOW: 2,
    }[config.bare_line_ending]
    first = (
        config.strict
        | config.lmtp << 1
        | policy << 2
        | bool(config.auth_mechanisms) << 4
        | config.starttls << 5
        | config.proxy_protocol << 6
        | (config.max_recipients < 10 or (config.max_message_size or 65) < 65) << 7
    )
    second = (
        config.dsn
        | config.xclient << 1
        | config.xforward << 2
        | config.binarymime << 3
        | config.require_tls << 4
        | config.requiretls << 5
        | (not config.auth_requires_tls) << 6
        | (not config.chunking) << 7
    )
    return bytes((first, second, seed)) + ACCEPT_ALL


def _client_control(config: ClientConfig, seed: int) -> bytes:
    flags = (
        config.strict
        | config.lmtp << 1
        | config.require_tls << 2
        | (config.bare_line_ending is BareLinePolicy.REJECT) << 3
        | (config.max_reply_lines < 10) << 4
    )
    return bytes((flags, seed, 0x01, 0x81, 0x02, 0x84))


def _proxy_control(parser: ProxyParser, seed: int) -> bytes:
    versions = {frozenset({1}): 1, frozenset({2}): 2}.get(parser._versions, 0)
    limits = {4096: 0, 0: 1, 64: 2, 65535: 3}
    return bytes((versions | limits.get(parser._max_tlv_size, 0) << 2, seed))


def _sasl_input(messages: list[bytes | None]) -> bytes:
    initial, rest = messages[0], [m for m in messages[1:] if m is not None]
    if initial is None:
        flags = 0x01
    elif initial == b"":
        flags = 0x01 | 2 << 1
    else:
        flags, rest = 0x01 | 1 << 1, [initial, *rest]
    return bytes((flags,)) + _harness._SASL_SEPARATOR.join(rest)


def _seeds_from(recorder: _Recorder) -> dict[str, list[bytes]]:
    seeds: dict[str, list[bytes]] = {name: [] for name in _harness.CHECKS}
    seed_bytes = itertools.cycle((0x00, 0x41, 0x83, 0xC7))
    for stream in recorder.servers.values():
        if not stream.too_long and isinstance(stream.owner, ServerConnection):
            control = _server_control(stream.owner.config, next(seed_bytes))
            seeds["server"].append(control + bytes(stream.data))
    for stream in recorder.clients.values():
        if not stream.too_long and isinstance(stream.owner, ClientConnection):
            control = _client_control(stream.owner.config, next(seed_bytes))
            seeds["client"].append(control + bytes(stream.data))
    for stream in recorder.proxies.values():
        if not stream.too_long and isinstance(stream.owner, ProxyParser):
            seeds["proxy"].append(_proxy_control(stream.owner, next(seed_bytes)) + stream.data)
    for text in recorder.paths:
        seeds["address"].append(text.encode("utf-8", "surrogatepass"))
    for text in recorder.parameters:
        seeds["parameters"].append(text.encode("utf-8", "surrogatepass"))
    for mechanism, messages in recorder.mechanisms.values():
        target = "sasl_" + mechanism.name.lower().replace("-", "_")
        if target in seeds and messages:
            seeds[target].append(_sasl_input(messages))
    return seeds


# --------------------------------------------------------------------------
# Seeds written here: exchanges the harness is set up to accept


def _built_seeds() -> Iterator[tuple[str, bytes]]:
    session = (
        b"EHLO client.example\r\nMAIL FROM:<a@example.com> SIZE=100\r\n"
        b"RCPT TO:<b@example.com>\r\nRCPT TO:<c@example.com>\r\nDATA\r\n"
        b"Subject: seed\r\n\r\n..stuffed\r\nbody\r\n.\r\n"
        b"MAIL FROM:<> BODY=8BITMIME\r\nRCPT TO:<Postmaster>\r\nBDAT 5\r\nhelloBDAT 0 LAST\r\n"
        b"QUIT\r\n"
    )
    yield "server", bytes((0, 0, 0x83)) + ACCEPT_ALL + session
    yield "server", bytes((0x02, 0, 0x41)) + ACCEPT_ALL + session.replace(b"EHLO", b"LHLO")
    yield (
        "server",
        bytes((0x30, 0x40, 0xC7))
        + b"\x01\x11\x01\x01"
        + (b"EHLO a.example\r\nAUTH PLAIN\r\nAHVzZXIAcGFzcw==\r\nSTARTTLS\r\n"),
    )
    yield (
        "server",
        bytes((0x40, 0, 0x83))
        + ACCEPT_ALL
        + (b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\n" + session),
    )
    yield (
        "client",
        bytes((0, 0x83, 0x01, 0x81, 0x02, 0x84))
        + (
            b"220 mx.example ESMTP\r\n250-mx.example\r\n250-PIPELINING\r\n250-CHUNKING\r\n"
            b"250-STARTTLS\r\n250-AUTH PLAIN\r\n250 ENHANCEDSTATUSCODES\r\n250 2.1.0 ok\r\n"
            b"250 2.1.5 ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n250 2.0.0 queued\r\n221 bye\r\n"
        ),
    )
    yield "sasl_plain", b"\x03\x00tim\x00tanstaaftanstaaf"
    yield "sasl_plain", b"\x03Ursel\x00Kurt\x00xipj3plmq"
    yield "sasl_login", b"\x01tim\xff\xfetanstaaftanstaaf"
    yield "sasl_cram_md5", b"\x01tim b913a602c7eda7a495b4e6e7334d3890"
    yield (
        "sasl_scram_sha_1",
        (
            b"\x03n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL\xff\xfe"
            b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=\xff\xfe"
        ),
    )
    yield (
        "sasl_scram_sha_256",
        (
            b"\x03n,,n=user,r=rOprNGfwEbeRWgbNEkqO\xff\xfe"
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
            b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=\xff\xfe"
        ),
    )
    yield "sasl_xoauth2", b"\x03user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2\x01\x01"
    yield (
        "sasl_oauthbearer",
        b"\x03n,a=user@example.com,\x01host=server.example.com\x01"
        + (b"port=143\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"),
    )
    yield "sasl_external", b"\x03fred@example.com"
    yield "proxy", b"\x00\x83PROXY TCP6 2001:db8::1 2001:db8::2 4242 25\r\nEHLO x\r\n"


# --------------------------------------------------------------------------


def _pick(target: str, candidates: list[bytes]) -> list[bytes]:
    """Up to SEEDS_PER_TARGET seeds: the shortest input of each distinct
    summary, richest summaries first, then the longest of the rest; inputs
    on which the check fails are reported, not kept."""
    check = _harness.CHECKS[target]
    unique = sorted({seed for seed in candidates if len(seed) <= MAX_SEED_SIZE})
    unique.sort(key=lambda seed: (len(seed), seed))
    by_summary: dict[str, bytes] = {}
    others: list[bytes] = []
    for seed in unique:
        try:
            summary = check(seed)
        except Exception as error:  # a finding: report it, keep the suite green
            print(f"{target}: check fails on {seed!r}: {type(error).__name__}: {error}")
            continue
        if summary not in by_summary:
            by_summary[summary] = seed
        else:
            others.append(seed)
    richest = sorted(by_summary, key=lambda summary: (-len(summary), summary))
    chosen = [by_summary[summary] for summary in richest[:SEEDS_PER_TARGET]]
    chosen += others[::-1][: SEEDS_PER_TARGET - len(chosen)]
    return chosen


def main() -> None:
    recorder = record()
    seeds = _seeds_from(recorder)
    for target, seed in _built_seeds():
        seeds[target].append(seed)
    for target, found in seeds.items():
        if target.startswith("sasl_"):
            # The same messages with a verifier that says no: the failure paths.
            found += [bytes((seed[0] & 0xFE,)) + seed[1:] for seed in found if seed]
    for target in _harness.CHECKS:
        directory = CORPUS / target
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.iterdir():
            old.unlink()
        chosen = _pick(target, seeds[target])
        for seed in chosen:
            (directory / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
        print(f"{target}: {len(chosen)} seeds of {len(seeds[target])} candidates")


if __name__ == "__main__":
    main()
