"""BOHB (Optuna's TPE with its Hyperband pruner) over the NATS-Bench topology benchmark (a multi-trial search: each trial is a benchmark look-up).

Usage: python exps/NATS-algos/bohb.py --dataset cifar10 --rand_seed -1 [flags] (see `--help`; the driver is
`bash scripts-search/algos/BOHB.sh -1`).
"""
from xautodl.commands.trials import main

if __name__ == "__main__":
    main("BOHB")
