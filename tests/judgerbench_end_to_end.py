#!/usr/bin/env python3
"""JudgerBenchV2 scores computed straight from a JudgerBenchV2 file and raw judge outputs, for
Arbiter's end-to-end test (tests/judgerbench_end_to_end.rs), written from the benchmark's
definition without Arbiter's code.

- Records are placed on A/B sides as the reference loader
  (opencompass/datasets/judge/judgerbenchv2.py) does: `random.seed(0)`, fifty 0s and fifty 1s
  shuffled, record idx uses entry idx of that list repeated ten times; 0 puts the base model in A.
- Verdicts are read with the reference evaluator's rule: the last match of
  `"?winner"?\\s*:\\s*"([A-Z])"` (`胜者` when `lan` is cn/zh).
- Labels: a human decision where there is one, else DeepSeek-R1's side (`r1_gt`, gt=r1) or the
  strict majority of the panel's readable A/B verdicts (gt=moj).
- Ground-truth wins: R1's table (the reference's `R1_Score_MAP`, from tests/judgerbench_reference.py)
  for one of the ten categories when gt=r1 and no label differs from R1's; else a tally of the
  labels' winners over the category's tested models.
- quirks=reference: `evaluate` of tests/judgerbench_reference.py's statement-by-statement logic
  generalised to these labels and wins (a model with no judge win drops out, the positional zip,
  the exceptions); quirks=intended: the formula as meant (every tested model counted, max|dW| over
  the same model's pair, 0/0 terms count 0, unlabelled items left out of the accuracy).
- The mean: each column's plain mean over the categories that have a final score.

Usage: judgerbench_end_to_end.py SPEC.json   (prints JSON)
SPEC: {"dataset": path (a file, or a folder of files read in name order), "base_model": str, "judge": str, "panel": [str],
       "outputs": {judge: [output per record]}, "decisions": {"idx": "A"|"B"|"tie"},
       "gt": "r1"|"moj", "quirks": "reference"|"intended"}
"""
import json
import os
import random
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from judgerbench_reference import GT_TABLE, rank_of  # noqa: E402

ORDER = ['Knowledge', 'Longtext', 'Reason_and_analysis', 'safe', 'Hallucination', 'chatQA',
         'IF', 'LanTask', 'Creation', 'Code_and_AI']


def canonical(category):
    return {'Reason & Analysis': 'Reason_and_analysis', 'Code & AI': 'Code_and_AI'}.get(category, category)


def placements():
    random.seed(0)
    sides = [0] * 50 + [1] * 50
    random.shuffle(sides)
    return sides * 10


def read_winner(text, lan):
    key = '胜者' if lan.lower() in ('zh', 'cn') else 'winner'
    found = re.findall(r'"?' + key + r'"?\s*:\s*"([A-Z])"', text)
    return found[-1] if found else None


def load(path):
    """One file, or a folder of one file per category (each placed from its own first record)."""
    if os.path.isdir(path):
        rows = []
        for name in sorted(os.listdir(path)):
            if name.endswith('.json'):
                rows.extend(load(os.path.join(path, name)))
        return rows
    with open(path, encoding='utf-8') as f:
        records = json.load(f)
    sides = placements()
    rows = []
    for idx, rec in enumerate(records):
        base = rec['base_model_response']['model_name']
        tested = rec['models_response']['model_name']
        a, b = (base, tested) if sides[idx] == 0 else (tested, base)
        gold = rec['gold']
        r1 = 'A' if gold['r1_gt'] == a else ('B' if gold['r1_gt'] == b else None)
        rows.append({'A': a, 'B': b, 'lan': gold['lan'], 'category': canonical(gold['category']),
                     'r1': r1})
    return rows


def labels_of(rows, spec):
    panel = spec['panel']
    out = []
    for idx, row in enumerate(rows):
        decided = spec['decisions'].get(str(idx))
        if decided is not None:
            out.append(decided if decided in ('A', 'B') else None)
            continue
        if spec['gt'] == 'r1':
            out.append(row['r1'])
            continue
        votes = [read_winner(spec['outputs'][j][idx], row['lan']) for j in panel]
        need = len(panel) // 2 + 1
        winner = [s for s in ('A', 'B') if votes.count(s) >= need]
        out.append(winner[0] if winner else None)
    return out


def gt_wins(category, members, rows, labels, spec):
    base = spec['base_model']
    tested = sorted({rows[i][s] for i in members for s in ('A', 'B')} - {base})
    if spec['gt'] == 'r1' and category in GT_TABLE:
        table = GT_TABLE[category]
        unchanged = all(labels[i] == rows[i]['r1'] for i in members)
        if unchanged and all(m in table for m in tested):
            return dict(table), 'r1_table'
    tally = {m: 0 for m in tested}
    for i in members:
        if labels[i] in ('A', 'B'):
            m = rows[i][labels[i]]
            if m != base:
                tally[m] += 1
    return tally, 'tally'


def reference(choices, members, rows, labels, gt, base):
    correct = count = 0
    wins = {}
    for i in members:
        choice = choices[i]
        if choice is None:
            continue
        count += 1
        if (labels[i] if labels[i] in ('A', 'B') else 'B') == choice:
            correct += 1
        if choice in ('A', 'B') and rows[i][choice] != base:
            wins[rows[i][choice]] = wins.get(rows[i][choice], 0) + 1
    accuracy = 100 * correct / count if count else None
    d1 = dict(sorted(wins.items()))
    d2 = dict(sorted(gt.items()))
    try:
        r1, r2 = rank_of(d1), rank_of(d2)
        rank_diff = sum(abs(r1[m] - r2[m]) for m in r1)
        score_diff = sum(abs(d1[m] - d2[m]) for m in d1)
        top = max(abs(x - y) for x, y in zip(d1.values(), d2.values()))
        terms = [abs(r1[m] - r2[m]) / (len(d1) - 1) + abs(d1[m] - d2[m]) / top for m in r1]
        normalized = sum(terms) / len(terms) * 100
        final = (100 * correct / count - normalized + 100) / 2
    except (KeyError, ValueError, ZeroDivisionError) as e:
        return {'accuracy': accuracy, 'error': type(e).__name__}
    return {'accuracy': accuracy, 'rank_diff': rank_diff, 'score_diff': score_diff,
            'max_score_diff': top, 'normalized_diff': normalized, 'final_score': final}


def intended(choices, members, rows, labels, gt, base):
    correct = compared = parsed = 0
    wins = {rows[i][s]: 0 for i in members for s in ('A', 'B') if rows[i][s] != base}
    for i in members:
        choice = choices[i]
        if choice is None:
            continue
        parsed += 1
        if labels[i] in ('A', 'B'):
            compared += 1
            correct += labels[i] == choice
        if choice in ('A', 'B') and rows[i][choice] != base:
            wins[rows[i][choice]] += 1
    gt = {m: w for m, w in gt.items() if m in wins}
    models = sorted(set(wins) | set(gt))
    judge = {m: wins.get(m, 0) for m in models}
    truth = {m: gt.get(m, 0) for m in models}
    r1, r2 = rank_of(judge), rank_of(truth)
    dr = {m: abs(r1[m] - r2[m]) for m in models}
    dw = {m: abs(judge[m] - truth[m]) for m in models}
    top = max(dw.values())
    n = len(models)

    def term(x, d):
        return 0.0 if d == 0 else x / d

    normalized = sum(term(dr[m], n - 1) + term(dw[m], top) for m in models) / n * 100
    accuracy = 100 * correct / compared if compared else None
    final = None if accuracy is None or parsed == 0 else (accuracy - normalized + 100) / 2
    return {'accuracy': accuracy if parsed else None, 'rank_diff': sum(dr.values()),
            'score_diff': sum(dw.values()), 'max_score_diff': top,
            'normalized_diff': normalized, 'final_score': final}


def main():
    with open(sys.argv[1], encoding='utf-8') as f:
        spec = json.load(f)
    rows = load(spec['dataset'])
    labels = labels_of(rows, spec)
    outputs = spec['outputs'][spec['judge']]
    choices = [read_winner(outputs[i], row['lan']) for i, row in enumerate(rows)]
    groups = {}
    for i, row in enumerate(rows):
        groups.setdefault(row['category'], []).append(i)
    names = [c for c in ORDER if c in groups] + sorted(c for c in groups if c not in ORDER)
    evaluate = reference if spec['quirks'] == 'reference' else intended
    categories = []
    for name in names:
        gt, source = gt_wins(name, groups[name], rows, labels, spec)
        result = evaluate(choices, groups[name], rows, labels, gt, spec['base_model'])
        result['category'] = name
        result['gt_source'] = source
        categories.append(result)
    scored = [c for c in categories if c.get('final_score') is not None]

    def mean(key):
        return sum(c[key] for c in scored) / len(scored) if scored else None

    out = {'categories': categories,
           'mean': {'categories': len(scored),
                    **{k: mean(k) for k in ('accuracy', 'rank_diff', 'score_diff',
                                            'normalized_diff', 'final_score')}}}
    json.dump(out, sys.stdout)


if __name__ == '__main__':
    main()
