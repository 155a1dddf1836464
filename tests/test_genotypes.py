"""NASNet-space genotypes: published cells, text / dict / file forms, the original tool's format, cell drawings."""
from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from xautodl.errors import ArchError, XAutoDLError
from xautodl.spaces.genotypes import (PUBLISHED_GENOTYPES, CellGenotype, NASNetGenotype, get_genotype,
                                      parse_genotype)
from xautodl.utils import drawing

FRC_GENOTYPE = NASNetGenotype(get_genotype("GDAS_V1").normal, (2, 3, 4, 5))
ALL_GENOTYPES = [get_genotype(name) for name in PUBLISHED_GENOTYPES] + [FRC_GENOTYPE]


def test_published_genotypes_by_name():
    assert set(PUBLISHED_GENOTYPES) == {"GDAS_V1", "DARTS_V1", "DARTS_V2", "DARTS", "SETN", "NASNet", "PNASNet"}
    assert get_genotype("DARTS") is get_genotype("DARTS_V2")
    assert get_genotype("gdas_v1") is get_genotype("GDAS_V1")
    gdas = get_genotype("GDAS_V1")
    assert gdas.normal[1] == (("skip_connect", 0), ("sep_conv_5x5", 2))
    assert gdas.reduce[2] == (("dil_conv_5x5", 2), ("sep_conv_3x3", 1))
    assert gdas.normal_concat == gdas.reduce_concat == (2, 3, 4, 5)
    nasnet = get_genotype("NASNet")
    assert len(nasnet.normal) == 5 and nasnet.normal_concat == (2, 3, 4, 5, 6) and nasnet.reduce_concat == (4, 5, 6)
    assert get_genotype("PNASNet").normal == get_genotype("PNASNet").reduce
    assert get_genotype("SETN").normal[3] == (("max_pool_3x3", 1), ("conv_3x1_1x3", 4))


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ArchError, match="GDAS_V1, DARTS_V1, DARTS_V2, DARTS, SETN, NASNet, PNASNet"):
        get_genotype("GDAS_V2")


def test_genotype_is_a_frozen_value():
    gdas = get_genotype("GDAS_V1")
    assert NASNetGenotype(gdas.normal, [2, 3, 4, 5], gdas.reduce, range(2, 6)) == gdas
    assert hash(NASNetGenotype(gdas.normal, [2, 3, 4, 5], gdas.reduce, [2, 3, 4, 5])) == hash(gdas)
    with pytest.raises(dataclasses.FrozenInstanceError):
        gdas.normal = ()
    assert gdas.normal_cell == CellGenotype(gdas.normal, (2, 3, 4, 5))
    assert gdas.reduce_cell.multiplier == 4 and FRC_GENOTYPE.reduce_cell is None


def test_printed_form_is_one_line_per_cell_and_parses_back():
    text = str(get_genotype("GDAS_V1"))
    assert text.splitlines() == [
        "normal: |skip_connect~0|skip_connect~1|+|skip_connect~0|sep_conv_5x5~2|+|sep_conv_3x3~3|skip_connect~0|"
        "+|sep_conv_5x5~4|sep_conv_3x3~3| concat=2,3,4,5",
        "reduce: |sep_conv_5x5~0|sep_conv_3x3~1|+|sep_conv_5x5~2|sep_conv_5x5~1|+|dil_conv_5x5~2|sep_conv_3x3~1|"
        "+|sep_conv_5x5~0|sep_conv_5x5~1| concat=2,3,4,5",
    ]
    assert str(FRC_GENOTYPE).splitlines()[1] == "reduce: fixed (GDAS-FRC reduction cell)"
    for genotype in ALL_GENOTYPES:
        assert parse_genotype(str(genotype)) == genotype
        assert parse_genotype(str(genotype).replace("\n", "; ")) == genotype


def test_dict_form_is_json_safe_and_round_trips(tmp_path):
    for genotype in ALL_GENOTYPES:
        data = json.loads(json.dumps(genotype.to_dict()))
        assert data["space"] == "nasnet"
        assert NASNetGenotype.from_dict(data) == genotype
        assert parse_genotype(json.dumps(data)) == genotype
    assert FRC_GENOTYPE.to_dict()["reduce"] is None and FRC_GENOTYPE.to_dict()["reduce_concat"] is None
    path = tmp_path / "genotype.json"
    path.write_text(json.dumps(get_genotype("SETN").to_dict()))
    assert parse_genotype(path) == get_genotype("SETN")
    assert parse_genotype(str(path)) == get_genotype("SETN")


def test_original_tool_dict_with_weights_and_aliases_is_imported():
    original = {
        "normal": [
            (("dua_sepc_3x3", 0, 0.31), ("skip_connect", 1, 0.25)),
            (("dil_sepc_5x5", 2, 0.2), ("dua_sepc_5x5", 0, 0.19)),
            (("skip_connect", 0, 0.3), ("dil_sepc_3x3", 3, 0.2)),
            (("max_pool_3x3", 4, 0.4), ("avg_pool_3x3", 1, 0.2)),
        ],
        "normal_concat": [2, 3, 4, 5],
        "reduce": [[["dua_sepc_5x5", 0, 0.2], ["dua_sepc_5x5", 1, 0.2]]] * 4,
        "reduce_concat": [2, 3, 4, 5],
    }
    genotype = NASNetGenotype.from_dict(original)
    assert genotype.normal == (
        (("sep_conv_3x3", 0), ("skip_connect", 1)),
        (("dil_conv_5x5", 2), ("sep_conv_5x5", 0)),
        (("skip_connect", 0), ("dil_conv_3x3", 3)),
        (("max_pool_3x3", 4), ("avg_pool_3x3", 1)),
    )
    assert genotype.reduce == ((("sep_conv_5x5", 0), ("sep_conv_5x5", 1)),) * 4
    # The same dict as the original tool prints it in its logs (tuples, numpy scalars).
    printed = repr(original).replace("0.31", "np.float32(0.31)")
    assert parse_genotype(printed) == genotype
    assert parse_genotype(original) == genotype


def test_darts_genotype_text_is_imported():
    text = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
            "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
            "normal_concat=range(2, 6), reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
            "('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), "
            "('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])")
    assert parse_genotype(text) == get_genotype("DARTS_V2")


@pytest.mark.parametrize("source, message", [
    ({"normal": [[["sep_conv_9x9", 0], ["skip_connect", 1]]], "normal_concat": [2]}, "unknown op 'sep_conv_9x9'"),
    ({"normal": [[["sep_conv_3x3", 2], ["skip_connect", 1]]], "normal_concat": [2]}, "step 0 takes input 2"),
    ({"normal": [[["sep_conv_3x3", 0]]], "normal_concat": [2, 3]}, r"concat \[2, 3\]"),
    ({"normal": [[["sep_conv_3x3", 0]]]}, "missing: normal_concat"),
    ({"space": "nas-bench-201", "normal": [], "normal_concat": []}, "'nas-bench-201' space"),
    ({"normal": [[["sep_conv_3x3", 0]]], "normal_concat": [2], "reduce": [[["max_pool_3x3", 1]]]},
     "reduce_concat is missing"),
    ({"normal": [[["sep_conv_3x3", "x"]]], "normal_concat": [2]}, "expected an integer"),
    ("no_such_genotype", "neither a published genotype"),
    ("missing/genotype.json", "nor an existing genotype file"),
    ("normal: |sep_conv_3x3~0|", "concat=2,3,4,5"),
    ("normal: |sep_conv_3x3-0| concat=2", "expected op~input"),
    ("{'normal': __import__('os')}", "cannot read the genotype text"),
    ("first line\nsecond line", "expected a published name"),
])
def test_invalid_genotypes_say_what_is_wrong(source, message):
    with pytest.raises(ArchError, match=message):
        parse_genotype(source)


def test_cell_dot_source_names_every_edge():
    gdas = get_genotype("GDAS_V1")
    source = drawing.cell_to_dot(gdas.reduce, gdas.reduce_concat, "reduction cell")
    assert source.startswith("digraph")
    assert 'label="reduction cell"' in source
    assert '"c_{k-2}" -> 0 [label=sep_conv_5x5]' in source
    assert "0 -> 2 [label=dil_conv_5x5]" in source
    assert sum(line.strip().endswith('-> "c_{k}"') for line in source.splitlines()) == 4
    assert source.count("[label=") == 8
    frc = drawing.fixed_reduction_to_dot("fixed")
    assert frc.count("max_pool_3x3 + BN") == 2 and frc.count("-> \"c_{k}\"") == 4


def test_draw_genotype_writes_dot_sources_without_the_dot_program(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    written = drawing.draw_genotype(FRC_GENOTYPE, tmp_path / "cells", formats=("dot",))
    assert [p.name for p in written] == ["normal.dot", "reduction.dot"]
    assert "GDAS-FRC" in written[1].read_text()
    with pytest.raises(XAutoDLError, match="apt-get install graphviz"):
        drawing.draw_genotype(FRC_GENOTYPE, tmp_path / "cells")


@pytest.mark.skipif(shutil.which("dot") is None, reason="the graphviz 'dot' program is not installed")
def test_draw_genotype_renders_images(tmp_path):
    written = drawing.draw_genotype(get_genotype("GDAS_V1"), tmp_path, formats=("svg",))
    assert [p.name for p in written] == ["normal.svg", "reduction.svg"]
    assert all(b"<svg" in p.read_bytes() for p in written)
    with pytest.raises(XAutoDLError, match="cannot render"):
        drawing.draw_cell(get_genotype("GDAS_V1").normal, (2, 3, 4, 5), tmp_path / "x", formats=("no-such-format",))
