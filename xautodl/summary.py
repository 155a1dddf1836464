"""`python -m xautodl.summary <run dir>`: the command users know; it lives in `xautodl.commands.summary`."""
from .commands.summary import main

if __name__ == "__main__":
    main()
