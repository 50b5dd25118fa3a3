#!/usr/bin/env python3
"""An independent re-implementation of OpenCompass's JudgerBenchV2 metric, for Arbiter's parity test.

It follows `Judgerbenchv2Evaluator.score` in
opencompass/openicl/icl_evaluator/icl_judge_evaluator.py of open-compass/opencompass
(read at commit a5acc4bba3b658f151617a3b393602110fb7a740; the file last changed in 9eaa1f6, #2095)
statement by statement, with the same dict, sort and zip behaviour, so that a model the judge
gave no win drops out of the judge's dictionary exactly as it does there. Written for this
project; no code was copied.

One addition, marked below: a category that is not one of the ten released ones gets its
ground-truth wins from a tally of `r1_gt` (every tested model listed, zero wins included),
which is what Arbiter does for other data; the reference would raise KeyError there.

Usage: judgerbench_reference.py RUNS.json   (prints a JSON list of results to stdout)
RUNS.json: {"runs": [{"name": str, "predictions": [str], "references": [{"ModelA", "ModelB",
"r1_gt", "category", "lan"}]}], "base_model": str}. Each run is one evaluator call (one
category file). A result is the metric dict without `details`, plus `max_score_diff`, or
{"name", "error": exception class name} where the reference raises.
"""
import json
import re
import sys

MODELS = [
    'DeepSeek-R1-Distill-Llama-70B', 'DeepSeek-R1-Distill-Qwen-32B',
    'Llama-3.1-70B-Instruct', 'Llama-3.3-70B-Instruct', 'Qwen2.5-32B-Instruct',
    'Qwen2.5-72B-Instruct', 'deepseek-v2_5-1210-turbomind',
    'gemma-2-27b-it-turbomind', 'mixtral-large-instruct-2407-lmdeploy',
    'nvidia-Llama-3.1-Nemotron-70B-Instruct-HF'
]
# DeepSeek-R1's wins per category (the facts the reference hard-codes), in MODELS order.
R1_WINS = {
    'Knowledge': [58, 56, 28, 46, 55, 80, 79, 44, 72, 76],
    'Longtext': [58, 52, 26, 37, 45, 77, 73, 65, 63, 54],
    'Reason_and_analysis': [63, 66, 23, 45, 60, 78, 85, 46, 56, 68],
    'safe': [55, 55, 55, 64, 72, 83, 72, 72, 69, 76],
    'Hallucination': [61, 60, 50, 48, 78, 74, 66, 65, 76, 75],
    'chatQA': [53, 48, 25, 34, 39, 68, 70, 56, 55, 69],
    'IF': [50, 41, 35, 37, 34, 48, 63, 38, 47, 62],
    'LanTask': [60, 71, 29, 46, 62, 74, 75, 53, 48, 69],
    'Creation': [66, 64, 34, 36, 40, 67, 73, 55, 43, 73],
    'Code_and_AI': [56, 43, 32, 43, 44, 60, 64, 34, 51, 62],
}
GT_TABLE = {c: dict(zip(MODELS, w)) for c, w in R1_WINS.items()}


def rank_of(wins):
    """Models ranked 1..n by (-wins, name)."""
    ordered = sorted(wins.items(), key=lambda kv: (-kv[1], kv[0]))
    return {name: place + 1 for place, (name, _) in enumerate(ordered)}


def last_winner(text, lan):
    key = '胜者' if lan.lower() in ['zh', 'cn'] else 'winner'
    found = re.findall(r'"?(' + key + r')"?\s*:\s*"([A-Z])"', text)
    if not found:
        return None
    return found[-1][1]


def table_for(category, references, base_model):
    if category == 'Reason & Analysis':
        return GT_TABLE['Reason_and_analysis']
    if category == 'Code & AI':
        return GT_TABLE['Code_and_AI']
    if category in GT_TABLE:
        return GT_TABLE[category]
    # Addition (not in the reference): a tally of r1_gt for other data.
    tally = {}
    for ref in references:
        for side in ('ModelA', 'ModelB'):
            if ref[side] != base_model:
                tally.setdefault(ref[side], 0)
        if ref['r1_gt'] != base_model and ref['r1_gt'] in (ref['ModelA'], ref['ModelB']):
            tally[ref['r1_gt']] += 1
    return tally


def evaluate(predictions, references, base_model):
    correct = 0
    count = 0
    judge_wins = {}
    gt = None
    for prediction, reference in zip(predictions, references):
        model_a = reference['ModelA']
        model_b = reference['ModelB']
        # As in the reference, the table is looked up on every record (the last one stands).
        gt = table_for(reference['category'], references, base_model)
        choice = last_winner(prediction, reference['lan'])
        if choice is None:
            continue
        count += 1
        gt_side = 'A' if reference['r1_gt'] == reference['ModelA'] else 'B'
        if gt_side == choice:
            correct += 1
        if choice == 'A':
            if model_a != base_model:
                if model_a not in judge_wins:
                    judge_wins[model_a] = 0
                judge_wins[model_a] += 1
        elif choice == 'B':
            if model_b != base_model:
                if model_b not in judge_wins:
                    judge_wins[model_b] = 0
                judge_wins[model_b] += 1

    d1 = dict(sorted(judge_wins.items()))
    d2 = dict(sorted(gt.items()))
    r1 = rank_of(d1)
    r2 = rank_of(d2)
    rank_gaps = {m: abs(r1[m] - r2[m]) for m in r1}
    win_gaps = {m: abs(d1[m] - d2[m]) for m in d1}
    rank_diff = sum(rank_gaps.values())
    score_diff = sum(win_gaps.values())
    n_minus_1 = len(d1) - 1
    # The positional zip of the two name-sorted value lists: the reference's max|ΔW|.
    max_gap = max(abs(x - y) for x, y in zip(d1.values(), d2.values()))
    per_model = {
        m: abs(r1[m] - r2[m]) / n_minus_1 + abs(d1[m] - d2[m]) / max_gap
        for m in r1
    }
    normalized = sum(per_model.values()) / len(per_model.values()) * 100
    accuracy = 100 * correct / count
    return {
        'accuracy': accuracy,
        'rank_diff': rank_diff,
        'score_diff': score_diff,
        'max_score_diff': max_gap,
        'normalized_diff': normalized,
        'final_score': (accuracy - normalized + 100) / 2,
    }


def main():
    with open(sys.argv[1], encoding='utf-8') as f:
        spec = json.load(f)
    base_model = spec['base_model']
    out = []
    for run in spec['runs']:
        try:
            result = evaluate(run['predictions'], run['references'], base_model)
        except (KeyError, ValueError, ZeroDivisionError) as e:
            result = {'error': type(e).__name__}
        result['name'] = run['name']
        out.append(result)
    json.dump(out, sys.stdout)


if __name__ == '__main__':
    main()
