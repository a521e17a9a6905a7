"""Whether a write should assume its key is new instead of reading it first.

Why: every commit of an object record compares the key's revision, so it
must know the record it replaces; it reads it first.  When the metadata
store cannot answer that read from memory (a key this process has not read
or written lately, the usual case for an upload of a new object), the read
is a hand-over to a reader thread and back (SQLite) or a round trip to the
cluster (etcd).  For a 4 KiB PUT of a new key at concurrency 1 that read was
about a tenth of the server's CPU per request (docs/performance.md,
"Fifteenth round").

A commit may instead *assume* the key is absent: plan the write as a
creation and compare the key's revision with 0.  The compare makes the
assumption safe: if the key exists (or another writer created it
meanwhile) the transaction changes nothing, and the commit reads the key
and plans again, exactly as after any lost compare.  Only the cost
differs: a wrong guess costs a failed transaction in place of the read.

:class:`NewKeyGuess` decides, per process, with no I/O, and guesses only
when both hold:

* most recent writes of keys the store could not answer from memory were
  of new keys (a decaying share, learnt from the guesses' outcomes and from
  the reads made while not guessing, so that it recovers when an
  overwrite-heavy phase ends);
* commits come one at a time.  While others are under way, the read's
  hand-over is what gathers their transactions into one group commit (the
  read pool answers a reactor turn's reads together): without it each
  transaction reached the SQLite writer alone, COMMITs per PUT went from
  0.09 to 0.29 at concurrency 16, and the CPU per PUT up by a quarter.
  A lone commit has nothing to gather with.
"""

from __future__ import annotations

# How much one observation moves an average: about the last twenty count.
_WEIGHT = 0.1
# Guess while more than half of the recent unread keys were new: a right
# guess saves a read, a wrong one costs a failed transaction, of about the
# same cost.
_THRESHOLD = 0.5
# ...and while, on average, fewer than this many other commits were under
# way when one began.
_ALONE = 0.5


class NewKeyGuess:
    """The recent share of new keys among writes of keys not in memory,
    and how many commits recently ran at once."""

    def __init__(self) -> None:
        # Start by guessing: a fresh server's writes are mostly uploads, and
        # a few wrong guesses bring the share under the threshold.
        self.share = 1.0
        self.crowd = 0.0
        self.right = 0
        self.wrong = 0

    def likely(self) -> bool:
        """Whether to assume the next unread key is new."""
        return self.share > _THRESHOLD and self.crowd < _ALONE

    def company(self, others: int) -> None:
        """A commit begins while ``others`` are under way in this process."""
        self.crowd += _WEIGHT * (others - self.crowd)

    def learn(self, was_new: bool) -> None:
        """One write of a key the store could not answer from memory: it
        was new (``was_new``) or it already existed (or a concurrent
        writer created it first)."""
        self.share += _WEIGHT * ((1.0 if was_new else 0.0) - self.share)

    def guessed(self, right: bool) -> None:
        """The outcome of one guess: counted (tests read the counts), and learnt."""
        if right:
            self.right += 1
        else:
            self.wrong += 1
        self.learn(right)
