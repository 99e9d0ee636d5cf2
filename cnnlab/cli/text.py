"""Text from data (class names, file names, messages that quote them) made safe to print.

A class name is a folder name, and a file name is whatever the file system holds: either
can carry ANSI escape sequences (which would recolour or rewrite the terminal) or, when the
name is not UTF-8, lone surrogates (which make ``print`` itself fail). Everything the
command line prints that comes from data goes through :func:`printable`.
"""

from __future__ import annotations

__all__ = ["printable"]

_KEEP = {"\n", "\t"}


def _escape(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: object, multiline: bool = False) -> str:
    """``text`` with control characters (ESC and the rest), lone surrogates and other
    unprintable characters written as escapes (``\\x1b``, ``\\udcff``).

    Args:
        text: anything; it is turned into ``str`` first.
        multiline: keep newlines and tabs (for messages that span lines).

    Example:
        >>> printable("cat\\x1b[31mred")
        'cat\\\\x1b[31mred'
        >>> printable("caf\\udce9"), printable("a\\nb"), printable("a\\nb", multiline=True)
        ('caf\\\\udce9', 'a\\\\x0ab', 'a\\nb')
    """
    text = str(text)
    if text.isprintable():  # surrogates and control characters are not
        return text
    keep = _KEEP if multiline else set()
    return "".join(ch if ch in keep or ch.isprintable() else _escape(ch) for ch in text)
