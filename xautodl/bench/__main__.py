"""`python -m xautodl.bench query|download`: the command users know; it lives in `xautodl.commands.bench`."""
from ..commands.bench import main
from ..runtime.cli import main_guard

if __name__ == "__main__":
    main_guard(main)
