"""Wildcard matching in linear time: ``*`` (any run of characters), ``?``
(any one character), everything else itself.

Bucket policies (resources, ``StringLike``/``ArnLike`` conditions, actions),
local grants and CORS origins all match a pattern someone wrote against a
value a client sent: an object key of up to 1,024 bytes, an ``Origin``
header.  Translated to a backtracking regex (``*`` as ``.*``), a pattern
with several stars between repeats of one character
(``arn:aws:s3:::b/*/*/*/*/*.jpg``) took time growing as the key's length to
the power of the stars: one anonymous GET of a 1,000-byte key held the
reactor for minutes.  Here a pattern is split at its stars into pieces of
fixed length (literals and ``?``), and each piece is found in turn, the
leftmost fit always being safe: with ``str.find`` for a literal piece, with
a star-free regex (no backtracking to speak of) for one holding ``?``.
Only ARN patterns whose wildcards must stay within a component go through
a bit-parallel simulation of their automaton: one pass over the value, a
handful of integer operations per character (in Python, so kept for those
rare, short values).

``segment`` wildcards (ARN components, see :class:`Glob`) do not match ``:``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

# A token: ("lit", char) | ("any", segment) | ("star", segment); segment:
# the wildcard does not match ":".
Token = tuple[str, object]


class Glob:
    """A compiled pattern; :meth:`fullmatch` says whether a whole value matches.

    Built from ``tokens``; use :func:`compile_glob` for a pattern string.
    ``ignore_case`` compares lower-cased (action names are case-insensitive).
    """

    __slots__ = ("_ignore_case", "_pieces", "_lit", "_any", "_any_seg", "_star", "_star_seg", "_accept")

    def __init__(self, tokens: Iterable[Token], *, ignore_case: bool = False) -> None:
        self._ignore_case = ignore_case
        collapsed: list[Token] = []
        for token in tokens:
            if ignore_case and token[0] == "lit":
                token = ("lit", str(token[1]).lower())
            if token[0] == "star" and collapsed and collapsed[-1] == token:
                continue  # "**" is "*"
            collapsed.append(token)
        plain = all(t[0] == "lit" or t in (("star", False), ("any", False)) for t in collapsed)
        # Without segment wildcards: the pieces between the stars.
        self._pieces: list[_Piece] | None = None
        if plain:
            pieces: list[_Piece] = []
            current: list[Token] = []
            for token in collapsed:
                if token[0] == "star":
                    pieces.append(_Piece(current))
                    current = []
                else:
                    current.append(token)
            pieces.append(_Piece(current))
            self._pieces = pieces
        # The automaton: bit i of a state set means "tokens[:i] matched".
        self._lit: dict[str, int] = {}
        self._any = self._any_seg = self._star = self._star_seg = 0
        for i, (kind, value) in enumerate(collapsed):
            bit = 1 << i
            if kind == "lit":
                self._lit[str(value)] = self._lit.get(str(value), 0) | bit
            elif kind == "any":
                if value:
                    self._any_seg |= bit
                else:
                    self._any |= bit
            elif value:
                self._star_seg |= bit
            else:
                self._star |= bit
        self._accept = 1 << len(collapsed)

    def fullmatch(self, value: str) -> bool:
        if self._ignore_case:
            value = value.lower()
        if self._pieces is not None:
            return _pieces_match(self._pieces, value)
        return self._run(value)

    def _run(self, value: str) -> bool:
        stars = self._star | self._star_seg
        state = self._closed(1, stars)
        for char in value:
            if char == ":":
                advance = self._lit.get(char, 0) | self._any
                stay = self._star
            else:
                advance = self._lit.get(char, 0) | self._any | self._any_seg
                stay = stars
            state = self._closed(((state & advance) << 1) | (state & stay), stars)
            if not state:
                return False
        return bool(state & self._accept)

    @staticmethod
    def _closed(state: int, stars: int) -> int:
        """``state`` plus what stars matching nothing reach."""
        while True:
            more = state | ((state & stars) << 1)
            if more == state:
                return state
            state = more


class _Piece:
    """A fixed-length run of literals and ``?``, between two stars."""

    __slots__ = ("length", "text", "regex")

    def __init__(self, tokens: list[Token]) -> None:
        self.length = len(tokens)
        self.text: str | None = None
        self.regex: re.Pattern[str] | None = None
        if all(kind == "lit" for kind, _ in tokens):
            self.text = "".join(str(value) for _, value in tokens)
        else:
            source = "".join(re.escape(str(value)) if kind == "lit" else "." for kind, value in tokens)
            self.regex = re.compile(source, re.DOTALL)

    def at(self, value: str, pos: int) -> bool:
        """Whether the piece matches ``value`` at ``pos``."""
        if self.text is not None:
            return value.startswith(self.text, pos)
        assert self.regex is not None
        return self.regex.match(value, pos) is not None

    def find(self, value: str, pos: int, end: int) -> int:
        """Where the piece first matches within ``value[pos:end]``, or -1."""
        if self.text is not None:
            return value.find(self.text, pos, end)
        assert self.regex is not None
        found = self.regex.search(value, pos, end)
        return -1 if found is None else found.start()


def _pieces_match(pieces: list[_Piece], value: str) -> bool:
    """Whether ``value`` is ``pieces`` joined by runs of any characters."""
    first, last = pieces[0], pieces[-1]
    if len(pieces) == 1:
        return len(value) == first.length and first.at(value, 0)
    end = len(value) - last.length
    if end < first.length or not first.at(value, 0) or not last.at(value, end):
        return False
    pos = first.length
    for piece in pieces[1:-1]:
        found = piece.find(value, pos, end)
        if found < 0:
            return False
        pos = found + piece.length
    return True


def tokens_of(text: str, *, question_mark: bool = True, segment: bool = False) -> list[Token]:
    """``text``'s tokens: ``*`` (and ``?`` when ``question_mark``) are
    wildcards, of ``segment`` kind when asked."""
    out: list[Token] = []
    for char in text:
        if char == "*":
            out.append(("star", segment))
        elif char == "?" and question_mark:
            out.append(("any", segment))
        else:
            out.append(("lit", char))
    return out


def literal_tokens(text: str) -> list[Token]:
    return [("lit", char) for char in text]


@lru_cache(maxsize=4096)
def compile_glob(pattern: str, *, ignore_case: bool = False, question_mark: bool = True) -> Glob:
    """``pattern`` compiled (``*``, and ``?`` unless ``question_mark`` is off)."""
    return Glob(tokens_of(pattern, question_mark=question_mark), ignore_case=ignore_case)
