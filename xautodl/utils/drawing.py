"""Cell drawings of NASNet-space genotypes with graphviz.

`cell_to_dot` makes the DOT source (needs only the `graphviz` Python package); rendering to PNG / PDF needs the
graphviz `dot` program as well. Nodes follow the DARTS drawings: c_{k-2} and c_{k-1} are the cell inputs, 0..n-1 the
steps, c_{k} the concatenated output; every edge is labelled with its op.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Sequence

from ..errors import XAutoDLError
from ..spaces.genotypes import NASNetGenotype

SOURCE_FORMATS = ("dot", "gv")
INSTALL_HINT = ("the graphviz 'dot' program is needed to render cell drawings but was not found on PATH; install it "
                "with `apt-get install graphviz` (Debian/Ubuntu), `brew install graphviz` (macOS) or "
                "`conda install graphviz`, or ask for the DOT source only with formats=('dot',)")

_INPUT_NAMES = ("c_{k-2}", "c_{k-1}")
_OUTPUT_NAME = "c_{k}"


def _graphviz():
    try:
        import graphviz
    except ImportError:
        raise XAutoDLError("cell drawings need the Python package graphviz: `pip install graphviz` "
                           "(or `pip install xautodl[plots]`)") from None
    return graphviz


def _new_graph(title: str):
    graph = _graphviz().Digraph(
        graph_attr={"rankdir": "LR", "label": title, "labelloc": "t", "fontsize": "20"},
        node_attr={"style": "filled", "shape": "rect", "align": "center", "fontsize": "20", "height": "0.5",
                   "width": "0.5", "penwidth": "2", "fontname": "helvetica"},
        edge_attr={"fontsize": "16", "fontname": "helvetica"},
    )
    for name in _INPUT_NAMES:
        graph.node(name, fillcolor="darkseagreen2")
    graph.node(_OUTPUT_NAME, fillcolor="palegoldenrod")
    return graph


def _node_name(node: int) -> str:
    return _INPUT_NAMES[node] if node < 2 else str(node - 2)


def _cell_graph(steps: Sequence[Sequence[tuple[str, int]]], concat: Sequence[int], title: str):
    graph = _new_graph(title)
    for step in range(len(steps)):
        graph.node(str(step), fillcolor="lightblue")
    for step, pairs in enumerate(steps):
        for op, source in pairs:
            graph.edge(_node_name(source), str(step), label=op)
    for node in concat:
        graph.edge(_node_name(node), _OUTPUT_NAME)
    return graph


def _fixed_reduction_graph(title: str):
    """The GDAS-FRC reduction cell: conv branches A, B and max-pool branches C, D on the two inputs, concatenated."""
    graph = _new_graph(title)
    branches = (("A", 0, "grouped conv 1x3, 3x1, conv 1x1"), ("B", 1, "grouped conv 1x3, 3x1, conv 1x1"),
                ("C", 0, "max_pool_3x3 + BN"), ("D", 1, "max_pool_3x3 + BN"))
    for name, source, label in branches:
        graph.node(name, fillcolor="lightblue")
        graph.edge(_INPUT_NAMES[source], name, label=label)
        graph.edge(name, _OUTPUT_NAME)
    return graph


def cell_to_dot(steps: Sequence[Sequence[tuple[str, int]]], concat: Sequence[int], title: str = "") -> str:
    """DOT source of a cell given as steps of (op, input) pairs and the concatenated nodes."""
    return _cell_graph(steps, concat, title).source


def fixed_reduction_to_dot(title: str = "") -> str:
    """DOT source of the fixed GDAS-FRC reduction cell."""
    return _fixed_reduction_graph(title).source


def _render(graph, path: Path, formats: Sequence[str]) -> list[Path]:
    """Write `graph` as path.<format> for every format ('dot' / 'gv' write the source and need no `dot` program)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rendered = [fmt for fmt in formats if fmt not in SOURCE_FORMATS]
    if rendered and shutil.which("dot") is None:
        raise XAutoDLError(INSTALL_HINT)
    written = []
    for fmt in formats:
        target = path.with_name(f"{path.name}.{fmt}")
        if fmt in SOURCE_FORMATS:
            target.write_text(graph.source, encoding="utf-8")
        else:
            try:
                target.write_bytes(graph.pipe(format=fmt))
            except _graphviz().ExecutableNotFound:
                raise XAutoDLError(INSTALL_HINT) from None
            except ValueError as error:
                raise XAutoDLError(f"cannot render a cell drawing as {fmt!r}: {error}") from None
            except subprocess.CalledProcessError as error:
                detail = (error.stderr or b"").decode(errors="replace").strip()
                raise XAutoDLError(f"graphviz could not render {target} ({detail or error}); check that your "
                                   f"graphviz installation supports the {fmt!r} format (`dot -T{fmt}`)") from None
        written.append(target)
    return written


def draw_cell(steps: Sequence[Sequence[tuple[str, int]]], concat: Sequence[int], path: str | Path, title: str = "",
              formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Render one cell to `path`.<format> for each format (`path` without suffix); returns the files written."""
    return _render(_cell_graph(steps, concat, title), Path(path), formats)


def draw_genotype(genotype: NASNetGenotype, out_dir: str | Path, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Render the normal and reduction cells as out_dir/normal.<fmt> and out_dir/reduction.<fmt>.

    A genotype without a reduction cell (GDAS-FRC) gets a drawing of the fixed reduction cell.
    """
    out_dir = Path(out_dir)
    written = draw_cell(genotype.normal, genotype.normal_concat, out_dir / "normal", "normal cell", formats)
    if genotype.reduce is None:
        reduction = _fixed_reduction_graph("fixed reduction cell (GDAS-FRC)")
    else:
        reduction = _cell_graph(genotype.reduce, genotype.reduce_concat, "reduction cell")
    return written + _render(reduction, out_dir / "reduction", formats)
