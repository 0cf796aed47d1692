"""One forward pass for the decode steps of many sessions that step at the same moment.

Decoding one token is bound by streaming the weights from memory, so one forward over B rows
costs far less than B forwards of one (8 SmolLM2 rows: about a third). A Batcher is shared by
every session of one loaded model, and its `decode(token, cache)` is called from many threads
at once (a web server runs each request on its own thread):

    batcher = Batcher(gpt)
    s = DecodingSession(gpt, tokenizer, batcher=batcher)   # ... and every other session

There is no worker thread. A caller that finds no batch running leads: it takes the requests
waiting at that moment (up to max_batch, oldest first), runs them as one `GPT.decode_step`,
hands each its logits and goes on leading until its own request has run; then a caller still
waiting takes the lead. Requests that arrive while a batch runs wait for the next one.

Before running, a leader waits for the sessions of the previous batch that are not back yet,
until the longer of wait_ms and half that batch's forward has passed since it ended: a session
that misses a batch waits a whole forward for the next one, so a short wait for it pays. A
room of sessions that step over and over so keeps stepping together, while a lone caller, or
one whose neighbours stepped a while ago, starts at once.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

import torch

from .gpt import GPT
from .kv_cache import KVCache


class _Request:
    __slots__ = ("token", "cache", "logits", "error", "done")

    def __init__(self, token: int, cache: KVCache):
        self.token, self.cache = token, cache
        self.logits: torch.Tensor | None = None
        self.error: BaseException | None = None
        self.done = False


class Batcher:
    """Batches the one-token steps of every session of one model. max_batch: the most rows
    in one forward; wait_ms: the shortest wait for the previous batch's sessions; clock: the
    seconds it measures those waits with (time.monotonic; tests pass their own)."""

    def __init__(self, gpt: GPT, max_batch: int = 16, wait_ms: float = 20.0,
                 clock: Callable[[], float] = time.monotonic):
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch must be an integer >= 1, but is {max_batch!r}")
        if (isinstance(wait_ms, bool) or not isinstance(wait_ms, (int, float))
                or not 0 <= wait_ms < 10_000):
            raise ValueError(f"wait_ms must be a number of milliseconds in [0, 10000), "
                             f"but is {wait_ms!r}")
        self.gpt, self.max_batch, self.wait_s = gpt, max_batch, wait_ms / 1000
        self.batch_sizes: Counter[int] = Counter()  # how many forwards ran at each batch size
        self.waits = 0  # how many batches waited for sessions of the batch before them
        self._clock = clock
        self._cond = threading.Condition()
        self._pending: list[_Request] = []  # oldest first
        self._leading = False  # a caller is collecting or running a batch
        # The previous batch: id() of its caches, when its forward ended and how long it took.
        self._previous: set[int] = set()
        self._previous_end = self._previous_forward_s = 0.0

    def decode(self, token: int, cache: KVCache) -> torch.Tensor:
        """Append `token` to the sequence `cache` holds (single-sequence, gpt.new_cache(1))
        and return the next token's logits (V,) in float32. Blocks until its batch has run;
        if that forward raises, every caller in the batch raises the same exception."""
        self.gpt.check_decode_step([token], [cache])  # a bad request fails alone, here
        request = _Request(token, cache)
        with self._cond:
            self._pending.append(request)
            self._cond.notify_all()
            while self._leading and not request.done:
                self._cond.wait()
            if request.done:
                return self._result(request)
            self._leading = True
        try:
            while not request.done:
                self._run(self._take_batch())
        finally:
            with self._cond:
                self._leading = False
                if not request.done:  # interrupted while leading: nobody may run it later
                    self._pending.remove(request)
                self._cond.notify_all()  # a caller still waiting, if any, leads next
        return self._result(request)

    @staticmethod
    def _result(request: _Request) -> torch.Tensor:
        if request.error is not None:
            raise request.error
        return request.logits

    def _take_batch(self) -> list[_Request]:
        """Wait for the previous batch's sessions to come back (see the module's docstring),
        then take up to max_batch requests, oldest first, at most one per cache."""
        with self._cond:
            deadline = self._previous_end + max(self.wait_s, self._previous_forward_s / 2)
            waited = False
            while len(self._pending) < self.max_batch:
                missing = self._previous - {id(r.cache) for r in self._pending}
                left = deadline - self._clock()
                if not missing or left <= 0:
                    break
                self.waits += not waited
                waited = True
                self._cond.wait(left)
            batch, rest, seen = [], [], set()
            for r in self._pending:
                if len(batch) < self.max_batch and id(r.cache) not in seen:
                    batch.append(r)
                    seen.add(id(r.cache))
                else:
                    rest.append(r)
            self._pending, self._previous = rest, seen
            return batch

    def _run(self, batch: list[_Request]) -> None:
        logits, error = None, None
        start = self._clock()
        try:
            out = self.gpt.decode_step([r.token for r in batch], [r.cache for r in batch])  # (B, V)
            # A copy per row: a view would keep the whole (B, V) block alive in each session.
            logits = [row.float().clone() for row in out]
        except BaseException as e:  # every caller must hear of it, or it would wait forever
            error = e
        with self._cond:
            self._previous_end = self._clock()
            self._previous_forward_s = self._previous_end - start
            self.batch_sizes[len(batch)] += 1
            for i, r in enumerate(batch):
                if error is not None:
                    r.error = error
                else:
                    r.logits = logits[i]
                r.done = True
            self._cond.notify_all()
