"""Fast mode: the same GPT computing on quantized weights, by swapping modules in place.

    gpt, tokenizer, card = load_model("smollm2", mode="fast")

A decode step multiplies one row by every weight matrix, so its time is the time to stream the
weights (538 MB a token for SmolLM2 in float32) plus about 2,000 small tensor ops at a few
microseconds each. Fast mode cuts both. GPT.forward, GPT.decode_step and the blocks run
unchanged, because only leaf modules are replaced:

    nn.Linear in the blocks   -> Int4Linear: 4-bit weights in groups of 32, w = scale * q + min,
                                 the arithmetic of GGUF's Q4_1 blocks (SmolLM2's layers get the
                                 file's own codes back)
    SwiGLU MLP                -> Int4SwiGLU: the same two matmuls, bfloat16 between them
    lm_head                   -> Int8Head: 8-bit weights in groups of 32, w = scale * q, the
                                 arithmetic of GGUF's Q8_0 (SmolLM2's embedding, code for code)
    RMSNorm                   -> FusedRMSNorm: one fused kernel instead of six ops
    Rotary                    -> FastRotary: the same rotation, a roll and a multiply-add
    Dropout                   -> Identity: a fast model is for inference only

Every matmul runs on one kernel, torch._weight_int4pack_mm_for_cpu, the fastest of torch's
weight-only kernels on these CPUs; the head's 8-bit codes go in as two 4-bit halves. The
kernel takes bfloat16 activations, scales and outputs: those roundings are all of fast mode's
error (tests/test_fast.py bounds it). Attention, norms, positions, the KV cache and the
residual stream stay float32. The token embedding keeps its float32 table, so the tie stays
visible: gpt.lm_head.weight is gpt.transformer.wte.weight.

Every kernel here treats each row on its own, so a batch of rows gives each row the logits it
would get alone. benchmarks/bench_fast.py measures the speed and how far the logits move from
exact mode (`divergence`); tests/test_fast.py holds the tolerance.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoint import Loaded
from .gpt import GPT, MLP, Rotary

GROUP = 32  # input features per scale, as in Q4_1 and Q8_0
MODES = ("exact", "fast")
EXACT_ARITHMETIC = "float32 throughout (the weights exactly as loaded)"
LOSSLESS = "the loaded weights' own codes, as a GGUF's Q4_1 and Q8_0 blocks hold them"
LOSSY = "re-quantized from float32, not exactly the loaded weights"


def int4_groups(w: torch.Tensor):
    """w (N, K) float32 -> codes (N, K) int32 in 0..15, scale and minimum (N, K / GROUP), with
    w ~ scale * codes + minimum in each group of GROUP inputs, and whether that is exact. This
    is Q4_1's quantizer (scale = (max - min) / 15), so a tensor dequantized from Q4_1 gets its
    own codes back, exactly."""
    N, K = w.shape
    groups = w.reshape(N, K // GROUP, GROUP)
    low, high = torch.aminmax(groups, dim=-1)  # (N, K / GROUP) each
    scale = (high - low) / 15
    safe = torch.where(scale == 0, torch.ones_like(scale), scale)  # a constant group: codes 0
    codes = torch.round((groups - low[..., None]) / safe[..., None]).clamp_(0, 15)
    # Exact unless a group misses by more than float32 rounding (lossy codes miss by ~scale/4).
    miss = (codes * scale[..., None] + low[..., None] - groups).abs_().amax(-1)
    exact = bool((miss <= 1e-4 * safe).all())
    return codes.reshape(N, K).to(torch.int32), scale, low, exact


def int8_groups(w: torch.Tensor, group: int = GROUP):
    """w (N, K) float32 -> codes (N, K) int32 in -127..127, scale (N, K / group), with
    w ~ scale * codes, and whether that is exact: Q8_0's quantizer (scale = max |w| / 127),
    which gives a tensor dequantized from Q8_0 its own codes back. group=K: a scale per row
    (training snapshots, model/snapshots.py)."""
    N, K = w.shape
    groups = w.reshape(N, K // group, group)
    scale = groups.abs().amax(-1) / 127  # (N, K / GROUP)
    safe = torch.where(scale == 0, torch.ones_like(scale), scale)
    codes = torch.round(groups / safe[..., None]).clamp_(-127, 127)
    miss = (codes * scale[..., None] - groups).abs_().amax(-1)
    return codes.reshape(N, K).to(torch.int32), scale, bool((miss <= 1e-4 * safe).all())


def _check_shape(N: int, K: int, name: str) -> None:
    if K % GROUP or N % 16:
        raise ValueError(f"fast mode cannot quantize {name} ({N} x {K}): its kernel needs input "
                         f"features in multiples of {GROUP} and outputs in multiples of 16; "
                         "load this model with mode='exact'")


def _pack(codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor):
    """The int4 kernel's operands: packed codes (N, K / 2) uint8 and (K / GROUP, N, 2)
    bfloat16 pairs; it computes w = (q - 8) * scale + zero."""
    packed = torch._convert_weight_to_int4pack_for_cpu(codes, 1)
    return packed, torch.stack([scale.t(), zero.t()], -1).to(torch.bfloat16).contiguous()


class Int4Linear(nn.Module):
    """nn.Linear on 4-bit weights: (..., K) float32 -> (..., N) float32."""

    def __init__(self, linear: nn.Linear, name: str):
        super().__init__()
        N, K = linear.weight.shape
        _check_shape(N, K, name)
        w = linear.weight.detach().float()
        codes, scale, low, self.lossless = int4_groups(w)  # lossless: the codes hold w exactly
        packed, scale_zero = _pack(codes, scale, low + 8 * scale)
        self.register_buffer("packed", packed)
        self.register_buffer("scale_zero", scale_zero)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float())
        self.in_features, self.out_features = K, N

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        """x (M, K) bfloat16 -> (M, N) bfloat16, without the bias."""
        return torch._weight_int4pack_mm_for_cpu(x, self.packed, GROUP, self.scale_zero)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.matmul(x.reshape(-1, self.in_features).to(torch.bfloat16))
        y = y.view(*x.shape[:-1], self.out_features).float()
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"{self.in_features} -> {self.out_features}, int4 in groups of {GROUP}"


class Int4SwiGLU(nn.Module):
    """The SwiGLU MLP on Int4Linear weights, staying in bfloat16 from the first matmul to
    the second: the 2 * hidden wide vector is never converted to float32 and back."""

    def __init__(self, mlp: MLP, name: str):
        super().__init__()
        self.c_fc = Int4Linear(mlp.c_fc, name + ".c_fc")
        self.c_proj = Int4Linear(mlp.c_proj, name + ".c_proj")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c_fc.matmul(x.reshape(-1, x.size(-1)).to(torch.bfloat16))  # (M, 2 * hidden)
        gate, up = h.chunk(2, dim=-1)
        return self.c_proj.matmul(F.silu(gate) * up).view(x.shape).float()  # (..., C)


class Int8Head(nn.Module):
    """The output matrix on 8-bit weights in groups of 32 (w = scale * q, q in -127..127, the
    arithmetic of GGUF's Q8_0): (..., C) float32 -> (..., V) float32.

    The int4 kernel is the fastest matmul here, so each 8-bit code goes in as two 4-bit halves:
    q + 128 = 16 * hi + lo, hence w = (16 * scale) * (hi - 8) + scale * lo. The halves sit side
    by side along the input axis, (V, 2C), and the input is repeated, [x, x], so one call sums
    both. `weight` is the float32 matrix the head was built from (for a tied head, the
    embedding table, so it costs nothing): code that asks lm_head.weight for the dtype and
    device, or checks the tie, still gets the truth. The product uses only the codes.
    """

    def __init__(self, linear: nn.Linear):
        super().__init__()
        N, K = linear.weight.shape
        padded = -(-N // 16) * 16  # the kernel wants outputs in multiples of 16 (GPT-2: 50257)
        _check_shape(padded, K, "lm_head")
        self.weight = linear.weight
        w = F.pad(linear.weight.detach().float(), (0, 0, 0, padded - N))  # (V', C)
        codes, scale, self.lossless = int8_groups(w)
        biased = codes + 128  # 1..255
        hi, lo = biased // 16, biased % 16
        # hi: (hi - 8) * 16 scale + 0; lo: (lo - 8) * scale + 8 scale. Groups: (V', 2C / GROUP).
        packed, scale_zero = _pack(torch.cat([hi, lo], 1), torch.cat([16 * scale, scale], 1),
                                   torch.cat([torch.zeros_like(scale), 8 * scale], 1))
        self.register_buffer("packed", packed)
        self.register_buffer("scale_zero", scale_zero)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float())
        self.in_features, self.out_features = K, N

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).to(torch.bfloat16)
        y = torch._weight_int4pack_mm_for_cpu(torch.cat([rows, rows], 1), self.packed, GROUP,
                                              self.scale_zero)  # (M, V rounded up to 16)
        if y.size(1) != self.out_features:
            y = y[:, :self.out_features]
        y = y.reshape(*x.shape[:-1], self.out_features).float()
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"{self.in_features} -> {self.out_features}, int8 in groups of {GROUP}"


class FusedRMSNorm(nn.Module):
    """RMSNorm in one fused kernel: the layer norm of [x, -x] (mean 0, variance mean(x^2))
    is x / sqrt(mean(x^2) + eps) in its first half. nn.RMSNorm runs as six ops on the CPU."""

    def __init__(self, norm: nn.RMSNorm):
        super().__init__()
        self.eps = norm.eps if norm.eps is not None else torch.finfo(torch.float32).eps
        self.width = norm.normalized_shape[0]
        w = torch.ones(self.width) if norm.weight is None else norm.weight.detach().float()
        self.register_buffer("weight", torch.cat([w, w]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        both = torch.cat([x, -x], dim=-1)  # (..., 2C)
        return F.layer_norm(both, (2 * self.width,), self.weight, None, self.eps)[..., :self.width]


class FastRotary(Rotary):
    """Rotary's rotation, x * cos + rotate_half(x) * sin, with rotate_half(x) = [-x2, x1]
    written as roll(x, hs/2) * [-1, 1]: the sign moves into a table, sin_signed = [-sin, sin],
    and the rotation is one roll and one multiply-add. Rotary's own tables stay as they were."""

    def __init__(self, rotary: Rotary):
        nn.Module.__init__(self)
        self.register_buffer("cos", rotary.cos, persistent=False)
        self.register_buffer("sin", rotary.sin, persistent=False)
        half = rotary.sin.size(-1) // 2
        signed = torch.cat([-rotary.sin[:, :half], rotary.sin[:, half:]], -1)  # (L, hs)
        self.register_buffer("sin_signed", signed, persistent=False)

    def _rotate(self, x: torch.Tensor, cos: torch.Tensor, sin_signed: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(x * cos, x.roll(x.size(-1) // 2, -1), sin_signed)

    def forward(self, x: torch.Tensor, start: int) -> torch.Tensor:
        # x: (B, heads, T, hs), every row at positions start..start+T-1
        T = x.size(2)
        return self._rotate(x, self.cos[start:start + T], self.sin_signed[start:start + T])

    def at_positions(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        # x: (B, heads, 1, hs), row b at its own position positions[b]
        return self._rotate(x, self.cos[positions][:, None, None, :],
                            self.sin_signed[positions][:, None, None, :])


def _fast_module(name: str, module: nn.Module) -> nn.Module | None:
    """The fast stand-in for one module, or None to keep it (and look inside it)."""
    if name == "lm_head":
        return Int8Head(module)
    if isinstance(module, MLP) and module.swiglu:
        return Int4SwiGLU(module, name)
    if isinstance(module, nn.Linear):
        return Int4Linear(module, name)
    if isinstance(module, nn.RMSNorm):
        return FusedRMSNorm(module)
    if isinstance(module, Rotary):
        return FastRotary(module)
    if isinstance(module, nn.Dropout):
        return nn.Identity()
    return None


def quantize_model(gpt: GPT) -> str:
    """Turn a loaded (exact, float32, eval) GPT into its fast form in place and return what it
    now computes with, in words. Raises ValueError, naming the layer, if a matrix does not fit
    the kernel; the model is then left as it was."""
    swaps = []  # (parent, attribute, replacement): built first, so a refusal changes nothing

    def visit(parent: nn.Module, prefix: str):
        for attr, child in parent.named_children():
            name = prefix + attr
            new = _fast_module(name, child)
            if new is None:
                visit(child, name + ".")
            else:
                swaps.append((parent, attr, new))

    with torch.no_grad():
        visit(gpt, "")
    for parent, attr, new in swaps:
        setattr(parent, attr, new)
    matrices = [m for _, _, m in swaps if isinstance(m, (Int4Linear, Int8Head))] + \
               [lin for _, _, m in swaps if isinstance(m, Int4SwiGLU) for lin in (m.c_fc, m.c_proj)]
    origin = LOSSLESS if all(m.lossless for m in matrices) else LOSSY
    return (f"int4 weights in groups of {GROUP} in the blocks and int8 weights in groups of "
            f"{GROUP} in the output head ({origin}), with bfloat16 scales and activations; "
            "attention, norms and the residual stream in float32")


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, but is {mode!r}")
    return mode


def apply_mode(loaded: Loaded, mode: str) -> Loaded:
    """The loaded (exact) model in `mode`, its card saying so: card["mode"] is "exact" or
    "fast", card["arithmetic"] what it computes with."""
    gpt, tokenizer, card = loaded
    card = {"parameters": gpt.num_params(), **card}  # counted before the weights become codes
    if check_mode(mode) == "fast":
        try:
            arithmetic = quantize_model(gpt)
        except ValueError as e:
            raise ValueError(f"{card.get('source') or card.get('name')}: {e}") from e
    else:
        arithmetic = EXACT_ARITHMETIC
    return Loaded(gpt, tokenizer, {**card, "mode": mode, "arithmetic": arithmetic})


@torch.inference_mode()
def divergence(reference: torch.Tensor, logits: torch.Tensor) -> dict:
    """How far `logits` are from `reference`, both (..., V), position by position: the KL
    divergence KL(reference || logits) in nats (mean, 99th percentile, max) and how often
    the two argmaxes agree (top1, a fraction)."""
    p = F.log_softmax(reference.float().reshape(-1, reference.size(-1)), dim=-1)
    q = F.log_softmax(logits.float().reshape(-1, logits.size(-1)), dim=-1)
    kl = (p.exp() * (p - q)).sum(-1)  # (positions,)
    return {"positions": kl.numel(), "mean_kl": kl.mean().item(),
            "p99_kl": kl.quantile(0.99).item(), "max_kl": kl.max().item(),
            "top1": (p.argmax(-1) == q.argmax(-1)).float().mean().item()}
