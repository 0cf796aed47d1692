"""The longer explanation a teacher can point at (each setting's own help text lives with it,
in model/sampling.py's table)."""

from model.sampling import chain_of

# The default chain: the stages the page lists before any of the newer ones is switched on.
PIPELINE = " → ".join(["raw logits", *(st.title for st in chain_of()), "pick"])

GUIDE_TEMPLATE = """
### How to read the chart

* **Grey bars**: the model's raw distribution for the next token (temperature 1, no filters).
* **Blue bars**: the final distribution after your settings. The token that the random number
  **u** lands on is drawn in amber.
* **Hatched bars**: tokens a filter removed; the colour says which one (hover for the reason).
* **The line** (right axis): cumulative probability, adding tokens from most to least likely.
  Sampling draws one uniform number u in [0, 1) and picks the first token whose cumulative
  probability reaches u: the dashed amber line. Move a slider and watch which bar it crosses.
* **Entropy** H (in bits) measures how spread out the distribution is; 2^H is the "effective
  number of choices": 1 for a certain pick, the vocabulary size for uniform.
* The last bar gathers the rest of the vocabulary.

### Temperature: a common misconception

A temperature near 0 does **not** make the output random. Dividing logits by a small T stretches
the gaps between them, so the top token takes nearly all the probability: T → 0 approaches
**argmax** (greedy decoding; T = 0 here *is* argmax). A *large* T shrinks the gaps and the
distribution approaches **uniform**: that is where the randomness comes from.

### The pipeline

`{pipeline}`

With *temperature last* (llama.cpp's order) the filters act on the T = 1 distribution and the
temperature is applied after them. Top-k keeps ties at the k-th logit; top-p keeps the token that
crosses p (Hugging Face's rule: drop the low tail whose total stays within 1 − p).

### Stepping

*Step* draws one token with the current settings; *Generate* streams many (Stop ends it);
clicking a bar appends that token yourself, even one a filter removed. Hover a token in the
text to see its alternatives; click it to see the distribution it was drawn from and rewind
there.
"""
GUIDE = GUIDE_TEMPLATE.replace("{pipeline}", PIPELINE)
