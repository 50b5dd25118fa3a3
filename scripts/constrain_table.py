#!/usr/bin/env python3
"""The README's constrained-decoding table from the JSON lines `arbiter constrain-bench --out`
writes (one or more files, e.g. from runs over different items or templates).

    python3 scripts/constrain_table.py judgments.jsonl [more.jsonl ...]

Per template: judgments per mode, the share with a readable verdict and with every field
complete, how many were cut at the token budget, and the decode speed of each mode (tokens
after the first over the time after the first, summed over the judgments).
"""

import json
import sys
from collections import OrderedDict


def main(paths):
    rows = OrderedDict()
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    continue
                r = json.loads(line)
                t = rows.setdefault(r["template"], {"none": [], "grammar": []})
                t[r["constrain"]].append(r)

    def tally(rs):
        n = len(rs)
        readable = sum(r["readable"] for r in rs)
        complete = sum(r["complete"] for r in rs)
        cut = sum(r["finish"] == "length" for r in rs)
        tokens = 0
        secs = 0.0
        for r in rs:
            t = r["timing"]
            if t["decode_tokens_per_s"] > 0:
                k = t["generated_tokens"] - 1
                tokens += k
                secs += k / t["decode_tokens_per_s"]
        items = len({r["item"] for r in rs})
        return n, readable, complete, cut, tokens / secs if secs else 0.0, items

    def share(k, n):
        return f"{100 * k / n:.0f}% ({k}/{n})" if n else "—"

    print("| template | items × orders | readable verdict, free | readable verdict, constrained "
          "| all fields complete, free | all fields complete, constrained "
          "| cut at the budget, free / constrained | decode tok/s, free / constrained |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    total = {"none": [], "grammar": []}
    for name, modes in rows.items():
        total["none"] += modes["none"]
        total["grammar"] += modes["grammar"]
        f, c = tally(modes["none"]), tally(modes["grammar"])
        print(f"| `{name}` | {f[5]} × 2 | {share(f[1], f[0])} | {share(c[1], c[0])} "
              f"| {share(f[2], f[0])} | {share(c[2], c[0])} | {f[3]} / {c[3]} "
              f"| {f[4]:.1f} / {c[4]:.1f} |")
    f, c = tally(total["none"]), tally(total["grammar"])
    print(f"| all | | {share(f[1], f[0])} | {share(c[1], c[0])} | {share(f[2], f[0])} "
          f"| {share(c[2], c[0])} | {f[3]} / {c[3]} | {f[4]:.1f} / {c[4]:.1f} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
