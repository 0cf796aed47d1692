"""A visitor's actions replayed alone, in this process: what their session on a server must
hold if nothing else touched it (the isolation checks of the load, fuzz and worker runs)."""

from __future__ import annotations

from model.sampling import SamplingSettings
from model.session import DecodingSession


def replay(gpt, tokenizer, prompt: str, seed: int, actions: list) -> dict:
    """actions: ("step", settings) | ("pick", token, settings) | ("undo",) |
    ("generate", n, settings), as sent to the API since the last reset. A Generate stops at
    end-of-text, as the endpoint does. Returns the text and the generated token ids."""
    s = DecodingSession(gpt, tokenizer, seed=seed)
    s.reset(prompt, seed=seed)
    for kind, *args in actions:
        if kind == "step":
            s.step(SamplingSettings.from_dict(args[0]))
        elif kind == "pick":
            s.pick(args[0], SamplingSettings.from_dict(args[1]))
        elif kind == "undo":
            s.undo()
        elif kind == "generate":
            settings = SamplingSettings.from_dict(args[1])
            for _ in range(args[0]):
                if s.step(settings).token == s.eot:
                    break
        else:
            raise ValueError(f"unknown action {kind!r}")
    return {"text": s.text, "tokens": [r.token for r in s.history]}
