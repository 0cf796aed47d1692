"""A beam search's result as plain data, the same for the page (static/beam.js) and the API:

    {"settings": {"num_beams": 4, "length_penalty": 1.0, "early_stopping": false, "tokens": 30},
     "from": 12,                      generated tokens the search continued (the text so far)
     "window": 0,                     prompt tokens the model did not see (a long text's start)
     "stopped": "max_new_tokens" | "end_of_text" | "early_stopping" | "no_improvement",
     "steps": [{"candidates": [{"token", "label", "parent", "logprob", "score", "penalised",
                                "status": "kept" | "finished" | "dropped", "beam", "ends"}, ...],
                "beams": [[token, ...], ...]}, ...],
     "ranking": [{"tokens", "labels", "text", "logprob", "score", "step"}, ...]}   best first

score is transformers' sequences_scores: sum of log-probabilities / length ** length_penalty.
"""

from __future__ import annotations

from .tokens import token_label


def beam_summary(session, result, base: list[int], settings: dict) -> dict:
    labels: dict[int, str] = {}

    def label(t: int) -> str:
        if t not in labels:
            labels[t] = token_label(session.tokenizer, t)
        return labels[t]

    steps = [{"candidates": [c.to_dict() | {"label": label(c.token)} for c in step.candidates],
              "beams": step.beams} for step in result.steps]
    ranking = [h.to_dict() | {"labels": [label(t) for t in h.tokens],
                              "text": session.tokenizer.decode(h.tokens)} for h in result.ranking]
    seen = len(base) + session.prompt_len  # the text's length when the search ran
    return {"settings": settings, "from": len(base), "window": max(0, seen - len(result.prompt)),
            "stopped": result.stopped, "steps": steps, "ranking": ranking}
