"""The words beside the controls. Short lines go under each slider; GUIDE is the longer
explanation a teacher can point at."""

INFO = {
    "temperature": "Divides the logits by T. T → 0 is greedy (argmax, not random!); "
                   "T = 1 is the model as trained; large T flattens towards uniform.",
    "top_k": "Keep only the k most likely tokens (ties at the k-th stay). 0 = off.",
    "top_p": "Keep the smallest set of top tokens whose probability adds up to p. 1 = off.",
    "min_p": "Drop tokens less likely than min-p × the top token's probability. 0 = off.",
    "typical_p": "Keep tokens whose surprise is closest to the average surprise (entropy), "
                 "up to mass p. 1 = off.",
    "repetition_penalty": "Tokens already in the text: positive logits ÷ penalty, negative ones "
                          "× penalty. > 1 discourages repeats. 1 = off.",
    "presence_penalty": "Subtracted once from the logit of every token already in the text. 0 = off.",
    "frequency_penalty": "Subtracted from a token's logit once per time it already appeared. 0 = off.",
    "no_repeat_ngram_size": "Ban any token that would repeat an n-gram already in the text. 0 = off.",
    "temperature_last": "Off: Hugging Face's order (temperature, then filters). On: llama.cpp's "
                        "(filters see the T = 1 distribution, temperature last).",
    "seed": "Fixes the uniform number u drawn for each position: same seed, settings and "
            "prompt give the same text.",
}

STAGE_TITLES = {
    "penalties": "penalties",
    "temperature": "temperature",
    "top_k": "top-k",
    "top_p": "top-p",
    "min_p": "min-p",
    "typical_p": "typical-p",
}

GUIDE = """
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

`raw logits → penalties → temperature → top-k → top-p → min-p → typical-p → pick`

With *temperature last* (llama.cpp's order) the filters act on the T = 1 distribution and the
temperature is applied after them. Top-k keeps ties at the k-th logit; top-p keeps the token that
crosses p (Hugging Face's rule: drop the low tail whose total stays within 1 − p).

### Stepping

*Step* draws one token with the current settings; *Generate* streams many (Stop ends it);
clicking a bar appends that token yourself, even one a filter removed. Hover a token in the
text to see its alternatives; click it to see the distribution it was drawn from and rewind
there.
"""
