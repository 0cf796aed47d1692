"""One sequence's decode step as one compiled graph (fast mode).

A fast-mode decode step is about 6,000 small tensor ops (norms, rotary, reshapes, casts to and
from bfloat16, cache writes, residual adds) around 121 calls of the int4 matmul kernel. On the
CPU each op costs a few microseconds of dispatch, and with two threads each ends in an OpenMP
barrier: a quarter to a third of the step. torch.compile (inductor, C++ through the system's
gcc) fuses the elementwise ops into a handful of loops per layer and calls the matmul kernel,
attention and the embedding as they are. The step is traced once for any cache length (the
length is a symbolic size), so one graph serves every position.

    compiled = CompiledStep(gpt)       # nothing compiled yet
    compiled.warm()                    # minutes the first time; seconds with inductor's disk cache
    gpt.compiled_step = compiled       # GPT.decode_step uses it for single rows once ready

What is kept:
- batching across sessions: a batch of rows (ragged caches) still runs GPT.decode_step's
  own eager code; only single rows take the graph;
- KV-cache rewind: the graph writes into the session's own KVCache at its `pos`, so
  truncate/advance work as before;
- prefill, scoring and the logit lens run GPT.forward, eager;
- exact mode is never compiled: its equality with transformers stays bit for bit where it is.

The graph computes the same arithmetic in a different order (fused loops, not the eager
kernels), so its logits differ from the eager step's in the last bits of float32. Fast mode's
fidelity bound (tests/test_fast.py) holds for both; tests/test_compiled_step.py compares them.
"""

from __future__ import annotations

import itertools
import os
import threading
import time

import torch

from .kv_cache import KVCache

MIN_LENGTH = 2  # the graph is traced for lengths >= 2 (torch specialises a size of 1)


class CompiledStep:
    """A compiled single-row decode step of `gpt`. Not ready (and never used) until warm()
    has compiled it; a call the graph can't take without compiling again runs eagerly."""

    def __init__(self, gpt):
        self.gpt = gpt
        self.ready = False
        self.error: str | None = None  # why warming failed, if it did
        self.seconds: float | None = None  # how long warm() took
        self.graph_calls = 0  # steps the graph ran (the rest ran eagerly)
        self.finished = threading.Event()  # set when warm() has ended, ready or not
        self._warming = threading.Lock()
        self._graph = torch.compile(self._step, dynamic=True)

    def _step(self, token: torch.Tensor, position: torch.Tensor, length: int, keys: torch.Tensor,
              values: torch.Tensor) -> torch.Tensor:
        """token (1, 1) long; position (1,) long, = length - 1, where this token goes; keys and
        values: the cache's whole buffers (n_layer, 1, nkv, capacity, hs), capacity >= length,
        written at length - 1 and read up to it. (Whole buffers, not views: a view's strides
        change when the cache grows, its buffer's follow from its sizes, which are symbolic.)
        Returns logits (1, V)."""
        gpt = self.gpt
        C = gpt.config.n_embd
        x = gpt.transformer.wte(token)  # (1, 1, C)
        rotary = gpt.rotary
        if rotary is None:
            x = x + gpt.transformer.wpe(position)[:, None, :]
        for i, block in enumerate(gpt.transformer.h):
            attn = block.attn
            q, k, v = attn._heads(block.ln_1(x))  # (1, nh, 1, hs), (1, nkv, 1, hs) x 2
            if rotary is not None:
                q, k = rotary.at_positions(q, position), rotary.at_positions(k, position)
            keys[i, :, :, length - 1:length] = k
            values[i, :, :, length - 1:length] = v
            y = attn.one_query(q, keys[i, :, :, :length], values[i, :, :, :length])  # (1, nh, 1, hs)
            x = x + attn.c_proj(y.transpose(1, 2).reshape(1, 1, C))
            x = x + block.mlp(block.ln_2(x))
        return gpt.lm_head(gpt.transformer.ln_f(x))[:, 0, :]

    @torch.inference_mode()
    def __call__(self, token: int, cache: KVCache) -> torch.Tensor:
        """Append `token` to the sequence `cache` holds and return the next token's logits
        (1, V); the cache advances by one, as GPT.decode_step's does."""
        length = cache.pos + 1
        if length > cache.capacity:
            cache._grow(length)
        args = (torch.tensor([[token]]), torch.tensor([cache.pos]), length, cache.k, cache.v)
        if self.ready and length >= MIN_LENGTH:
            try:
                with torch.compiler.set_stance("fail_on_recompile"):
                    logits = self._graph(*args)
                self.graph_calls += 1
            except Exception:  # a shape the graph was not made for: never compile mid-request
                logits = self._step(*args)
        else:
            logits = self._step(*args)
        cache.advance(1)
        return logits

    def warm(self) -> float:
        """Compile the graph on a scratch cache (a few steps, so that the traced length is
        symbolic) and mark it ready. Returns the seconds it took; on failure leaves it
        unready, with the reason in .error, and the model decoding eagerly."""
        with self._warming:
            if self.ready:
                return self.seconds or 0.0
            start = time.perf_counter()
            try:
                # Two capacities and three lengths, so that both sizes are traced as symbols;
                # a length equal to its capacity (a full buffer), and buffers made inside
                # inference mode (a cache grown during a step), which torch traces apart.
                for made_for_inference, capacity in itertools.product((False, True), (MIN_LENGTH + 3, 16)):
                    with torch.inference_mode(made_for_inference):
                        cache = self.gpt.new_cache(1, max_len=capacity)
                    with torch.inference_mode():
                        self.gpt(torch.zeros(1, MIN_LENGTH, dtype=torch.long), cache=cache)
                        for position in range(MIN_LENGTH, MIN_LENGTH + 3):
                            self._graph(torch.zeros(1, 1, dtype=torch.long), torch.tensor([position]),
                                        position + 1, cache.k, cache.v)
            except Exception as e:  # no compiler, an unsupported op: eager decoding still works
                self.error = f"{type(e).__name__}: {e}"[:500]
                return time.perf_counter() - start
            finally:
                self.finished.set()
            self.seconds = time.perf_counter() - start
            self.ready = True
            return self.seconds


def compile_in_background(gpt) -> CompiledStep:
    """Attach a CompiledStep to `gpt` and warm it on a daemon thread: the model serves eagerly
    meanwhile and switches to the graph when it is ready."""
    compiled = CompiledStep(gpt)
    gpt.compiled_step = compiled

    def warm_politely():
        try:  # the lowest priority for this thread and the compilers it starts: visitors first
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        except (AttributeError, OSError):
            pass
        compiled.warm()

    threading.Thread(target=warm_politely, name="compile-decode-step", daemon=True).start()
    return compiled
