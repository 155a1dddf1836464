"""The entry points: argument parsing and composition of the library's parts, one module per command.

- `search`: GDAS / DARTS-V1 / DARTS-V2 search (`exps/NAS-Bench-201-algos/*.py`, `scripts-search/...`)
- `basic_main`: train a NASNet-space evaluation net (`exps/basic/basic-main.py`, `scripts/nas-infer-train.sh`,
  `scripts/retrain-searched-net.sh`)
- `train_a_net`: train one NAS-Bench-201 arch the benchmark's way (`exps/NAS-Bench-201/main.py`)
- `demo`, `summary` (`python -m xautodl.summary`), `bench` (`python -m xautodl.bench`)
"""
