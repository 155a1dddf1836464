"""DARTS-V1 architecture search on the NAS-Bench-201 space (or the NASNet space with --model_config).

Usage: python exps/NAS-Bench-201-algos/DARTS-V1.py --dataset cifar10 --track_running_stats 1 --rand_seed -1 [flags]
(see `--help`; the driver is scripts-search/algos/DARTS-V1.sh).
"""
from xautodl.commands.search import main

if __name__ == "__main__":
    main("DARTS-V1")
