"""The search algorithms, independent of any space: edge mixing (`mixing`), GDAS / DARTS-V1 / DARTS-V2
(`algorithms`), the one bilevel search loop (`loop`) and the search entry point (`cli`)."""
