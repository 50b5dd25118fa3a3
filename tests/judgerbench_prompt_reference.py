#!/usr/bin/env python3
"""Builds JudgerBenchV2 judge prompts with the reference loader's own code, for Arbiter's
byte-for-byte prompt test (tests/judgerbench_prompt.rs).

It executes `opencompass/datasets/judge/judgerbenchv2.py` of open-compass/opencompass (read at
commit a5acc4bba3b658f151617a3b393602110fb7a740) with its framework imports replaced by small
stand-ins (`datasets.Dataset.from_list` returns its list; the registry decorator does nothing;
`get_data_path` returns its argument), calls `Judgerbenchv2Dataset().load(DIR, NAME)` and prints
the rows it builds (`{"prompt": judge prompt, "judge": gold with ModelA/ModelB}`) as JSON.
Nothing of the reference is copied here: pass the path of a checkout's file.

tests/data/judgerbench_prompts/Mixed.reference.json was made with
    judgerbench_prompt_reference.py judgerbenchv2.py tests/data/judgerbench_prompts Mixed
and the two prompts hard-coded in tests/judgerbench_prompt.rs from tests/data/Knowledge.json with
    judgerbench_prompt_reference.py judgerbenchv2.py tests/data Knowledge

Usage: judgerbench_prompt_reference.py REFERENCE_LOADER.py DIR NAME > OUT.json
"""
import json
import sys

STAND_INS = '''
import copy, json, os.path as osp, random
from collections import defaultdict
class Dataset:
    @staticmethod
    def from_list(rows):
        return rows
class DatasetDict(dict):
    pass
class _Registry:
    def register_module(self):
        return lambda cls: cls
LOAD_DATASET = _Registry()
DICT_POSTPROCESSORS = _Registry()
def get_data_path(path, local_mode=True):
    return path
class BaseDataset:
    pass
'''


def main():
    loader, folder, name = sys.argv[1:4]
    with open(loader, encoding='utf-8') as f:
        source = f.read()
    # The module's own imports (datasets, opencompass) are replaced by the stand-ins above.
    body = '\n'.join(line for line in source.split('\n')
                     if not line.startswith(('import ', 'from ')))
    namespace = {}
    exec(STAND_INS + body, namespace)
    rows = namespace['Judgerbenchv2Dataset']().load(folder, name)
    json.dump(rows, sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write('\n')


if __name__ == '__main__':
    main()
