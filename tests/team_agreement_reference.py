"""Independent statement of the agreement between annotators that `arbiter score` reports, for
tests/team.rs. Reads {"annotator": {"item": "A"|"B"|"tie"}} as JSON on standard input and
prints {"pairs": {"a/b": [shared items, agreed, kappa or null]}, "alpha": [items, alpha or null]}.

Cohen's kappa per pair on the items both annotators decided:
    kappa = (p_o - p_e) / (1 - p_e), p_e = sum over labels of p_a(label) * p_b(label).
Krippendorff's alpha (nominal) as one minus observed over expected disagreement, computed here
from every ordered pair of values inside a unit (weighted 1 / (m_u - 1)) and every ordered
pair of values across the whole pool, not from a coincidence matrix."""

import itertools
import json
import sys


def cohen(a, b):
    n = len(a)
    if n == 0:
        return None
    labels = set(a) | set(b)
    p_o = sum(1 for x, y in zip(a, b) if x == y) / n
    p_e = sum((a.count(l) / n) * (b.count(l) / n) for l in labels)
    if len(set(a)) == 1 and set(a) == set(b):
        return None
    return (p_o - p_e) / (1 - p_e)


def alpha(units):
    units = [u for u in units if len(u) >= 2]
    pool = [v for u in units for v in u]
    n = len(pool)
    if n < 2:
        return None
    observed = 0.0
    for u in units:
        m = len(u)
        for i, j in itertools.permutations(range(m), 2):
            if u[i] != u[j]:
                observed += 1.0 / (m - 1)
    observed /= n
    expected = 0.0
    for i, j in itertools.permutations(range(n), 2):
        if pool[i] != pool[j]:
            expected += 1.0
    expected /= n * (n - 1)
    if expected == 0.0:
        return None
    return 1.0 - observed / expected


def main():
    decisions = json.load(sys.stdin)
    names = sorted(decisions)
    pairs = {}
    for x, y in itertools.combinations(names, 2):
        shared = sorted(set(decisions[x]) & set(decisions[y]))
        a = [decisions[x][i] for i in shared]
        b = [decisions[y][i] for i in shared]
        agreed = sum(1 for p, q in zip(a, b) if p == q)
        pairs[f"{x}/{y}"] = [len(shared), agreed, cohen(a, b)]
    items = sorted({i for d in decisions.values() for i in d})
    units = [[decisions[n][i] for n in names if i in decisions[n]] for i in items]
    units = [u for u in units if len(u) >= 2]
    print(json.dumps({"pairs": pairs, "alpha": [len(units), alpha(units)]}))


main()
