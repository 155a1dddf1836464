"""Regularized (ageing) evolution, Real et al. AAAI 2019, as the original's `exps/NATS-algos/regularized_ea.py` runs
it: a population of `population` random cells; then, while the budget lasts, a tournament of `sample_size` members
drawn with replacement picks the most accurate as parent, its mutant joins the population and the OLDEST member
leaves (age, not fitness, decides who dies)."""
from __future__ import annotations

import collections
import random
from dataclasses import dataclass
from typing import Sequence

from ..runtime.flags import positive_int
from ..spaces.nas201 import NUM_NODES
from .loop import Cell, TrialAlgorithm, TrialLoop, random_cell, setting


@dataclass(frozen=True)
class EvolutionSettings:
    population: int = setting(10, "--ea_population", "cells kept in the population", positive_int)
    sample_size: int = setting(3, "--ea_sample_size", "members drawn (with replacement) for each tournament",
                               positive_int)


Member = tuple[Cell, float]  # a cell and its validation accuracy


def mutate(cell: Cell, ops: Sequence[str], rng: random.Random) -> Cell:
    """`cell` with one edge's op switched to another op. As the original, the edge is drawn in two steps, a node
    uniformly, then one of its incoming edges uniformly (so node 1's single edge is picked 1/3 of the time)."""
    node = rng.randint(1, NUM_NODES - 1)
    edge = node * (node - 1) // 2 + rng.randint(0, node - 1)  # edges are ordered node by node, inputs ascending
    new_op = rng.choice([op for op in ops if op != cell[edge]])
    return cell[:edge] + (new_op,) + cell[edge + 1:]


def tournament(population: Sequence[Member], sample_size: int, rng: random.Random) -> Member:
    """The most accurate of `sample_size` members drawn with replacement (the first drawn wins a tie)."""
    sample = [rng.choice(population) for _ in range(sample_size)]
    return max(sample, key=lambda member: member[1])


def regularized_evolution(trials: TrialLoop, rng: random.Random,
                          settings: EvolutionSettings) -> collections.deque[Member]:
    """Run the evolution until the budget is spent; returns the final population, oldest first. The initial
    population is evaluated whole, whatever the budget, as in the original."""
    population: collections.deque[Member] = collections.deque()
    while len(population) < settings.population:
        cell = random_cell(trials.ops, rng)
        population.append((cell, trials.evaluate(cell)))
    while trials.within_budget:
        parent, _ = tournament(population, settings.sample_size, rng)
        child = mutate(parent, trials.ops, rng)
        population.append((child, trials.evaluate(child)))
        population.popleft()
    return population


R_EA = TrialAlgorithm("R-EA", regularized_evolution, EvolutionSettings,
                      folder=lambda settings: f"R-EA-SS{settings.sample_size}")
