"""The search algorithms, independent of any space: edge mixing (`mixing`), GDAS / DARTS-V1 / DARTS-V2 and their
registry (`algorithms`), the one bilevel search loop (`loop`). The entry point is `xautodl.commands.search`."""
