"""The search algorithms, independent of any space: edge mixing (`mixing`), the shared weight step and GDAS /
DARTS-V1 / DARTS-V2 (`algorithms`), SETN, ENAS and RANDOM-NAS (`setn`, `enas`, `random_nas` over `weight_sharing`),
the registry of them all (`registry`) and the one bilevel search loop (`loop`). The entry point is
`xautodl.commands.search`."""
