"""Random search without weight sharing over the NATS-Bench topology benchmark (a multi-trial search: each trial is a benchmark look-up).

Usage: python exps/NATS-algos/random_wo_share.py --dataset cifar10 --rand_seed -1 [flags] (see `--help`; the driver is
`bash scripts-search/algos/Random.sh -1`).
"""
from xautodl.commands.trials import main

if __name__ == "__main__":
    main("RANDOM")
