"""Independent re-statement of JudgeBench's score (ScalerLab/JudgeBench, utils/metrics.py
`compute_final_metrics` and the group loop of run_judge.py, commit
e2c52c284e735e139b3daa61c206ee208f36c461), written from its description for the parity test in
tests/judge_bench.rs. Reads JudgeBench output files (plain or gzipped JSON Lines) given as
arguments and prints, as JSON, {file name: {group: [correct, pairs, score]}} for the groups
overall, knowledge, reasoning, math and coding. Works on the raw decision strings, not on
anything Arbiter parsed."""

import gzip
import json
import os
import sys

GROUPS = [
    ("knowledge", "mmlu-pro"),
    ("reasoning", "livebench-reasoning"),
    ("math", "livebench-math"),
    ("coding", "livecodebench"),
    ("overall", ""),
]
OTHER_SIDE = {"A>B": "B>A", "B>A": "A>B"}


def other_side(decision):
    # Only the two strict preferences have another side; everything else stays as it is.
    return OTHER_SIDE.get(decision, decision)


def records(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def decision_of(game):
    return None if game is None else game.get("decision")


def pair_is_correct(record, both_games):
    label = record["label"]
    games = record["judgments"]
    decisions = [decision_of(games[0])]
    if both_games:
        # The second game saw the responses swapped: bring its decision back first.
        decisions.append(other_side(decision_of(games[1])))
    tally = sum(1 if d == label else -1 if d == other_side(label) else 0 for d in decisions)
    return tally > 0


def main():
    out = {}
    for path in sys.argv[1:]:
        recs = records(path)
        both = all(len(r["judgments"]) == 2 for r in recs)
        table = {}
        for group, prefix in GROUPS:
            chosen = [r for r in recs if r["source"].startswith(prefix)]
            correct = sum(pair_is_correct(r, both) for r in chosen)
            table[group] = [correct, len(chosen), 100 * correct / len(chosen)]
        out[os.path.basename(path)] = table
    print(json.dumps(out))


if __name__ == "__main__":
    main()
