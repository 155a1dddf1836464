"""Regularized evolution (R-EA) over the NATS-Bench topology benchmark (a multi-trial search: each trial is a benchmark look-up).

Usage: python exps/NATS-algos/regularized_ea.py --dataset cifar10 --rand_seed -1 [flags] (see `--help`; the driver is
`bash scripts-search/algos/R-EA.sh cifar10 3 -1`).
"""
from xautodl.commands.trials import main

if __name__ == "__main__":
    main("R-EA")
