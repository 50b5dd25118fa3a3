#!/usr/bin/env python3
"""Writes the Parquet test fixtures (tests/data/parquet/) from the JSON fixtures beside them,
with pyarrow, the way the Hugging Face hub and pandas users get Parquet files: several row
groups, snappy by default (one file zstd), nulls where a record lacks a key, and a hub-style
folder of shards. Run from the repository root: python3 scripts/make_parquet_fixtures.py
"""
import json
import pathlib

import pyarrow as pa
import pyarrow.parquet as pq

DATA = pathlib.Path("tests/data")
OUT = DATA / "parquet"


def records(path):
    text = path.read_text()
    if text.lstrip().startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def table(rows):
    # pyarrow takes the columns from the first row: give every row every key (None where a
    # record lacks it), as a DataFrame would.
    keys = list(dict.fromkeys(k for row in rows for k in row))
    return pa.Table.from_pylist([{k: row.get(k) for k in keys} for row in rows])


def write(rows, name, **kw):
    table_ = table(rows)
    kw.setdefault("row_group_size", 2)
    pq.write_table(table_, OUT / name, **kw)


def main():
    OUT.mkdir(exist_ok=True)
    # One file per layout Arbiter reads, each the twin of a JSON fixture.
    write(records(DATA / "rewardbench.jsonl"), "rewardbench.parquet")
    write(records(DATA / "arena.jsonl"), "arena.parquet")
    write(records(DATA / "mtbench_human.jsonl"), "mtbench_human.parquet")
    write(records(DATA / "Knowledge.json"), "Knowledge.parquet", compression="zstd")
    write(records(DATA / "native.jsonl"), "native.parquet", row_group_size=1)
    # Nulls: a RewardBench row whose optional columns are null, one row group of one row.
    rows = records(DATA / "rewardbench.jsonl")
    rows[0]["subset"] = None
    rows[1]["chosen_model"] = None
    write(rows, "rewardbench_nulls.parquet")
    # A hub dataset folder: data/train-0000N-of-00002.parquet shards.
    shards = OUT / "hub" / "data"
    shards.mkdir(parents=True, exist_ok=True)
    rows = records(DATA / "rewardbench.jsonl")
    half = len(rows) // 2
    for n, part in enumerate([rows[:half], rows[half:]]):
        pq.write_table(table(part), shards / f"train-0000{n}-of-00002.parquet")
    # Not a dataset: a Parquet file whose columns are no known layout.
    write([{"text": "a", "label": 1}, {"text": "b", "label": 0}], "unknown_layout.parquet")


if __name__ == "__main__":
    main()
