# The service extensions of an EHLO reply (RFC 5321 4.1.1.1), typed.
#
# Both engines derive what is in force from the same 250 reply to EHLO: the
# server from the reply its application sent, the client from the reply it
# received. That keeps the two sides in agreement even when the application
# writes its own EHLO reply instead of the one built from the config.
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from ._util import LocalProtocolError

__all__ = ["Extensions"]

# RFC 5321 4.1.1.1: ehlo-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_WORD = re.compile(r"[!-~]+")


@dataclass(frozen=True, slots=True)
class Extensions:
    """The extensions a server advertised, keyword by keyword, in order.

    ``keywords`` holds (KEYWORD, parameters) pairs, keywords upper-cased;
    unknown keywords are kept. The properties read the ones the engine knows.
    """

    keywords: tuple[tuple[str, tuple[str, ...]], ...] = ()
    _index: dict[str, tuple[str, ...]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )
    # Read on every MAIL and RCPT, so worked out once: the octets the
    # extensions add to a MAIL and to a RCPT line (see command_line_limit).
    _line_extra: tuple[int, int] = field(init=False, repr=False, compare=False, default=(0, 0))

    def __post_init__(self) -> None:
        index = dict(self.keywords)
        object.__setattr__(self, "_index", index)
        utf8, dsn = 10 * ("SMTPUTF8" in index), "DSN" in index
        mail = 26 * ("SIZE" in index) + utf8 + 100 * dsn + 500 * ("AUTH" in index)
        object.__setattr__(self, "_line_extra", (mail, utf8 + 500 * dsn))
        for keyword, params in self.keywords:
            if not isinstance(keyword, str) or not _KEYWORD.fullmatch(keyword):
                raise LocalProtocolError(f"not an EHLO keyword: {keyword!r}")
            if keyword != keyword.upper():
                raise LocalProtocolError(f"EHLO keywords are stored upper-case, got {keyword!r}")
            for param in params:
                if not param or any(c in param for c in " \t\r\n\0"):
                    raise LocalProtocolError(f"bad parameter {param!r} for {keyword}")

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> Extensions:
        """Parse the lines of a 250 reply to EHLO that follow the first one.

        Lines that are not ``keyword *(SP param)`` are skipped. The obsolete
        ``AUTH=LOGIN PLAIN`` form that old servers send is read as AUTH.
        """
        found: dict[str, tuple[str, ...]] = {}
        for line in lines:
            words = line.split(" ")
            # Only printable ASCII words: a server's junk (controls, NUL,
            # non-ASCII that upper() would fold into a keyword, such as
            # U+017F into "S") is skipped, never turned into an extension.
            if not all(_WORD.fullmatch(word) for word in words):
                continue
            keyword = words[0].upper()
            params = tuple(words[1:])
            if keyword.startswith("AUTH="):
                params = (keyword[5:], *params) if len(keyword) > 5 else params
                keyword = "AUTH"
                if "AUTH" in found:
                    continue
            if not _KEYWORD.fullmatch(keyword) or keyword in found:
                continue
            found[keyword] = params
        return cls(tuple(found.items()))

    def lines(self) -> tuple[str, ...]:
        """The EHLO reply lines that advertise these extensions."""
        return tuple(" ".join((keyword, *params)) for keyword, params in self.keywords)

    def __contains__(self, keyword: object) -> bool:
        return isinstance(keyword, str) and keyword.upper() in self._index

    def params(self, keyword: str) -> tuple[str, ...] | None:
        """The parameters of ``keyword``, or None when it was not advertised."""
        return self._index.get(keyword.upper())

    @property
    def pipelining(self) -> bool:
        """PIPELINING (RFC 2920)."""
        return "PIPELINING" in self._index

    @property
    def eightbitmime(self) -> bool:
        """8BITMIME (RFC 6152)."""
        return "8BITMIME" in self._index

    @property
    def smtputf8(self) -> bool:
        """SMTPUTF8 (RFC 6531)."""
        return "SMTPUTF8" in self._index

    @property
    def chunking(self) -> bool:
        """CHUNKING, the BDAT command (RFC 3030)."""
        return "CHUNKING" in self._index

    @property
    def binarymime(self) -> bool:
        """BINARYMIME (RFC 3030)."""
        return "BINARYMIME" in self._index

    @property
    def dsn(self) -> bool:
        """DSN (RFC 3461)."""
        return "DSN" in self._index

    @property
    def starttls(self) -> bool:
        """STARTTLS (RFC 3207)."""
        return "STARTTLS" in self._index

    @property
    def enhanced_status_codes(self) -> bool:
        """ENHANCEDSTATUSCODES (RFC 2034)."""
        return "ENHANCEDSTATUSCODES" in self._index

    @property
    def requiretls(self) -> bool:
        """REQUIRETLS (RFC 8689)."""
        return "REQUIRETLS" in self._index

    @property
    def size(self) -> bool:
        """SIZE was advertised, with or without a limit (RFC 1870)."""
        return "SIZE" in self._index

    @property
    def max_size(self) -> int | None:
        """SIZE's fixed maximum in octets; None when there is none (RFC 1870
        section 4: no value, or 0, means no fixed maximum)."""
        params = self.params("SIZE")
        if not params or not params[0].isdigit() or not params[0].isascii():
            return None
        value = int(params[0])
        return value or None

    @property
    def auth_mechanisms(self) -> tuple[str, ...]:
        """The SASL mechanisms AUTH offers (RFC 4954), upper-cased."""
        return tuple(p.upper() for p in self.params("AUTH") or ())
