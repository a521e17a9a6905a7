"""A server-wide cap on upload bytes held in memory (``limits.max_inflight_upload_bytes``).

Each upload already bounds its own memory: :class:`~lightningstor.s3.body.ObjectBody`
pauses its TCP transport while its writer has more than two 1 MiB pieces
waiting.  That bounds one upload to a few MiB, but not a thousand of them.
:class:`InflightBudget` bounds their sum: the bytes that came off the sockets
and have not yet been written to the storage backend (pieces being filled,
hashed or written, and bodies waiting for their signature check).

It never fails a request.  When the total reaches the limit, uploads that
receive more data have their transport paused (the kernel's socket buffers
and then TCP flow control hold the client back); they are resumed, oldest
first, once the total has drained below three quarters of the limit.

Progress is guaranteed.  An upload frees memory without reading more only
while it has whole pieces queued for its writer (it is *draining*).  An upload
that holds only a partly filled piece can free nothing until more bytes
arrive, so if every held byte were of that kind, pausing everyone would
deadlock.  The budget therefore lets exactly one such upload (the *runner*)
keep reading while nothing drains: it soon completes a piece, which drains.
The limit is thus soft by about one socket read per upload that is reading
at the moment it is reached, plus one piece while nothing drains.  Uploads
read their sockets 1 MiB at a time (s3/body.py) only while the budget has
room for every open upload to take that much (:meth:`BudgetAccount.large_reads_fit`);
otherwise they read Twisted's 64 KiB, so the overshoot stays a few KiB per
upload rather than a MiB each (measured: 16 uploads against an 8 MiB limit
grew the server by 25 MiB with 1 MiB reads throughout, 7.5 MiB with 64 KiB).

The accounting lives in one place (this module, on the reactor thread); the
body sinks report what they hold and obey pause/resume calls.
"""

from __future__ import annotations

from collections.abc import Callable

MiB = 1 << 20

DEFAULT_MAX_INFLIGHT_UPLOAD_BYTES = 256 * MiB


class InflightBudget:
    """Sum of the bytes every open :class:`BudgetAccount` holds, against ``limit``.

    ``peak`` is the largest total seen (for tests and diagnostics).  Reactor
    thread only.
    """

    def __init__(self, limit: int = DEFAULT_MAX_INFLIGHT_UPLOAD_BYTES) -> None:
        if limit <= 0:
            raise ValueError("the in-flight upload limit must be positive")
        self.limit = limit
        # Paused uploads resume below this, so a drained piece does not
        # resume and re-pause everyone on every megabyte.
        self.resume_below = limit - limit // 4
        self.total = 0
        self.peak = 0
        self._waiting: dict[BudgetAccount, None] = {}  # insertion-ordered: FIFO
        self._draining = 0  # open accounts with whole pieces queued
        self._runner: BudgetAccount | None = None
        self._open = 0

    @property
    def waiting(self) -> int:
        """How many uploads are paused by this budget right now."""
        return len(self._waiting)

    @property
    def accounts(self) -> int:
        """How many uploads hold an open account."""
        return self._open

    def open(self, pause: Callable[[], None], resume: Callable[[], None]) -> BudgetAccount:
        """An account for one upload; ``pause``/``resume`` stop and restart its reading.

        The budget calls ``pause`` at most once before each ``resume``, and
        resumes a paused upload when it stops reading or closes.
        """
        self._open += 1
        return BudgetAccount(self, pause, resume)

    @property
    def over(self) -> bool:
        return self.total >= self.limit

    # -- called by accounts --------------------------------------------------

    def _update(self, account: BudgetAccount, held: int, draining: bool) -> None:
        self.total += held - account.held
        account.held = held
        if draining != account.draining:
            self._draining += 1 if draining else -1
            account.draining = draining
        if self.total > self.peak:
            self.peak = self.total
        if account.reading and not account.waiting and self.over:
            self._maybe_pause(account)
        self._wake()

    def _maybe_pause(self, account: BudgetAccount) -> None:
        if account.draining:
            # It frees memory by itself; let it (and others) drain first.
            self._pause(account)
        elif self._draining > 0:
            self._pause(account)  # memory is being freed elsewhere
        elif self._runner is None or self._runner is account:
            self._runner = account  # nothing drains: this one must make progress
        else:
            self._pause(account)

    def _pause(self, account: BudgetAccount) -> None:
        # A paused upload cannot be the one that must make progress: keeping
        # the turn while paused would leave everyone paused once the other
        # drains end (_wake hands the turn on only when nobody holds it).
        if self._runner is account:
            self._runner = None
        account.waiting = True
        self._waiting[account] = None
        account._pause()

    def _stop_reading(self, account: BudgetAccount) -> None:
        account.reading = False
        if self._runner is account:
            self._runner = None
        if account.waiting:
            # Balance our pause: the upload's transport is no longer ours to hold.
            account.waiting = False
            del self._waiting[account]
            account._resume()
        self._wake()

    def _close(self, account: BudgetAccount) -> None:
        self._stop_reading(account)
        self.total -= account.held
        account.held = 0
        if account.draining:
            self._draining -= 1
            account.draining = False
        self._open -= 1
        self._wake()

    def _wake(self) -> None:
        """Resume paused uploads once memory drained, or hand the runner on."""
        if not self._waiting:
            return
        if self.total < self.resume_below:
            ready = list(self._waiting)
            self._waiting.clear()
        elif self._draining == 0 and self._runner is None:
            first = next(iter(self._waiting))
            del self._waiting[first]
            self._runner = first
            ready = [first]
        else:
            return
        # State first, callbacks after: a resume may re-enter the budget.
        for account in ready:
            account.waiting = False
        for account in ready:
            account._resume()


class BudgetAccount:
    """One upload's share of an :class:`InflightBudget`.

    The upload calls :meth:`update` whenever what it holds changes,
    :meth:`stop_reading` once its body has ended (it must not be paused any
    more), and :meth:`close` when it holds nothing any more.  ``close`` is
    idempotent.
    """

    def __init__(self, budget: InflightBudget, pause: Callable[[], None], resume: Callable[[], None]) -> None:
        self._budget = budget
        self._pause = pause
        self._resume = resume
        self.held = 0
        self.draining = False
        self.reading = True
        self.waiting = False
        self.closed = False

    def update(self, held: int, draining: bool) -> None:
        """``held``: bytes received and not yet stored; ``draining``: some of
        them are queued for the backend, so they will be freed without
        reading more."""
        if self.closed:
            return
        self._budget._update(self, held, draining)

    def large_reads_fit(self, size: int) -> bool:
        """Whether every open upload may read ``size`` bytes a time without
        the budget's total going past its limit (see the module docstring)."""
        budget = self._budget
        return budget.total + budget.accounts * size <= budget.limit

    def stop_reading(self) -> None:
        if not self.closed and self.reading:
            self._budget._stop_reading(self)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._budget._close(self)
