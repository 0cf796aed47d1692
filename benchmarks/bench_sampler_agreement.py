"""How often our samplers agree with llama.cpp's own, over thousands of random cases each.

    python -m benchmarks.bench_sampler_agreement               # 5,000 cases per sampler
    python -m benchmarks.bench_sampler_agreement --cases 20000 --json out.json

The same comparisons as tests/test_llamacpp_samplers.py (testkit/sampler_agreement.py), more
cases. For each sampler it prints the cases compared, the threshold edges (survivors that
differ only by float32 rounding: a relative 1e-5 nudge of our threshold reproduces
llama.cpp's), the cases left out as llama.cpp quirks (mirostat 1's k beyond 2^31, undefined in
C; typical's NaN entropy where a probability is 0; dynamic temperature counting top-nσ's masked
tokens), and every real difference. DRY runs on SmolLM2's vocabulary (its GGUF,
fetched once by `python -c "from model import load_model; load_model('smollm2')"`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from testkit import sampler_agreement as agree


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_sampler_agreement",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=5000, help="random cases per sampler (default 5000)")
    ap.add_argument("--seed", type=int, default=100, help="offset for every sampler's seed")
    ap.add_argument("--no-dry", action="store_true", help="skip DRY (it needs SmolLM2's GGUF)")
    ap.add_argument("--json", help="also write the counts here")
    args = ap.parse_args(argv)
    runs = [("top_n_sigma", lambda n, s: agree.top_n_sigma(n, s + 1)),
            ("xtc", lambda n, s: agree.xtc(n, s + 2)),
            ("penalties", lambda n, s: agree.penalties(n, s + 3)),
            ("dynamic_temperature", lambda n, s: agree.dynamic_temperature(n, s + 4)),
            ("logit_bias", lambda n, s: agree.logit_bias(n, s + 5)),
            ("mirostat", lambda n, s: agree.mirostat(n, s + 6)),
            ("chains", lambda n, s: agree.chains(n, s + 7)),
            ("epsilon_eta", lambda n, s: agree.epsilon_eta(n, s + 9))]
    if not args.no_dry:
        runs.append(("dry", _dry))
    rows, failed = [], False
    print(f"{'sampler':<22}{'cases':>8}{'agree':>8}{'edges':>8}{'quirks':>8}{'differ':>8}{'seconds':>9}")
    for name, run in runs:
        start = time.perf_counter()
        tally = run(args.cases, args.seed)
        seconds = time.perf_counter() - start
        agreed = tally.cases - tally.edges - tally.quirks - len(tally.differ)
        print(f"{tally.name:<22}{tally.cases:>8}{agreed:>8}{tally.edges:>8}{tally.quirks:>8}"
              f"{len(tally.differ):>8}{seconds:>9.1f}", flush=True)
        for where, what in tally.differ[:5]:
            print(f"    differs: {where}: {what}")
        rows.append({"sampler": name, "cases": tally.cases, "agree": agreed, "edges": tally.edges,
                     "quirks": tally.quirks, "differ": len(tally.differ), "seconds": round(seconds, 1)})
        failed |= bool(tally.differ) and name != "chains"
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)
    return 1 if failed else 0


def _dry(cases: int, seed: int):
    import llama_cpp as L

    from model.loading import load_model
    from model.smollm2 import gguf_path
    from testkit import llamacpp as ref

    _, tokenizer, _ = load_model("smollm2")
    model, vocab = ref.load_vocab(gguf_path())
    try:
        return agree.dry(cases, seed + 8, tokenizer, vocab)
    finally:
        L.llama_model_free(model)


if __name__ == "__main__":
    sys.exit(main())
