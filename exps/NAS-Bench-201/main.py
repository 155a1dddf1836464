"""Train NAS-Bench-201 architectures the benchmark's way (driver: scripts-search/NAS-Bench-201/train-a-net.sh).

Usage: python exps/NAS-Bench-201/main.py --arch '<arch string or name>' --channel 16 --num_cells 5 [flags]
"""
from xautodl.commands.train_a_net import main

if __name__ == "__main__":
    main()
