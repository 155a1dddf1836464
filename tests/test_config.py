"""The config format: every shipped file, the split files, extras, overrides and every error."""
from __future__ import annotations

import copy
import json
import pickle
import time
from pathlib import Path

import pytest

from xautodl.config_utils import Config, MissingConfigKeyError, load_config, package_config_dir, resolve_config_path
from xautodl.errors import ConfigError

CONFIG_DIR = package_config_dir()
SHIPPED = sorted(p.relative_to(CONFIG_DIR).as_posix() for p in CONFIG_DIR.rglob("*") if p.suffix in (".config", ".txt"))
GENOTYPES = ["GDAS_V1", "DARTS_V1", "DARTS_V2", "SETN", "NASNet", "PNASNet"]
OPT_KEYS = {"scheduler", "LR", "eta_min", "epochs", "warmup", "optim", "decay", "momentum", "nesterov", "criterion"}


def write_config(folder: Path, entries: object, name: str = "my.config") -> Path:
    path = folder / name
    path.write_text(entries if isinstance(entries, str) else json.dumps(entries))
    return path


def test_the_package_ships_every_config_the_scripts_use():
    expected = {
        "nas-benchmark/algos/GDAS.config",
        "nas-benchmark/algos/DARTS.config",
        "nas-benchmark/algos/SETN.config",
        "nas-benchmark/algos/ENAS.config",
        "nas-benchmark/algos/RANDOM.config",
        "nas-benchmark/hyper-opts/200E.config",
        "search-opts/GDAS-NASNet-CIFAR.config",
        "search-opts/DARTS-NASNet-CIFAR.config",
        "search-archs/GDAS-NASNet-CIFAR.config",
        "search-archs/GDASFRC-NASNet-CIFAR.config",
        "search-archs/DARTS-NASNet-CIFAR.config",
        "opts/NAS-CIFAR.config",
        "opts/NAS-IMAGENET.config",
        "nas-benchmark/cifar-split.txt",
        "nas-benchmark/cifar100-test-split.txt",
        "nas-benchmark/imagenet-16-120-test-split.txt",
        "nas-benchmark/ImageNet16-120-split.txt",
    }
    expected |= {f"archs/NAS-{data}-{name}.config" for data in ("CIFAR", "IMAGENET") for name in GENOTYPES + ["none"]}
    assert expected <= set(SHIPPED)


@pytest.mark.parametrize("relative", SHIPPED)
def test_every_shipped_file_loads_with_typed_values(relative):
    config = load_config(CONFIG_DIR / relative)
    assert len(config) > 0
    raw = json.loads((CONFIG_DIR / relative).read_text())
    python_types = {"str": str, "int": int, "float": float, "bool": bool}
    for key, (tag, _) in raw.items():
        values = config[key] if isinstance(config[key], list) else [config[key]]
        if tag == "none":
            assert values == [None]
        else:
            assert all(type(value) is python_types[tag] for value in values), key
    json.dumps(config.to_dict())


@pytest.mark.parametrize(
    "relative, keys, size, universe",
    [
        ("cifar-split.txt", ("train", "valid"), 25000, 50000),
        ("cifar100-test-split.txt", ("xvalid", "xtest"), 5000, 10000),
        ("imagenet-16-120-test-split.txt", ("xvalid", "xtest"), 3000, 6000),
        ("ImageNet16-120-split.txt", ("train", "valid"), 75850, 151700),
    ],
)
def test_split_files_are_disjoint_halves_of_their_set(relative, keys, size, universe):
    start = time.perf_counter()
    split = load_config(f"configs/nas-benchmark/{relative}")
    elapsed = time.perf_counter() - start
    first, second = (split[key] for key in keys)
    assert len(first) == len(second) == size
    assert all(type(index) is int for index in first[:10] + second[-10:])
    assert set(first).isdisjoint(second)
    assert set(first) | set(second) == set(range(universe))
    assert elapsed < 1.0


def test_search_and_training_settings_match_the_published_tables():
    gdas = load_config("configs/nas-benchmark/algos/GDAS.config")
    assert (gdas.scheduler, gdas.LR, gdas.eta_min, gdas.epochs, gdas.warmup) == ("cos", 0.025, 0.001, 250, 0)
    assert (gdas.optim, gdas.nesterov, gdas.momentum, gdas.decay) == ("SGD", True, 0.9, 0.0005)
    assert (gdas.criterion, gdas.batch_size) == ("Softmax", 64)
    darts = load_config("configs/nas-benchmark/algos/DARTS.config")
    assert darts.to_dict() == {**gdas.to_dict(), "epochs": 50}
    assert load_config("configs/search-opts/GDAS-NASNet-CIFAR.config").to_dict() == {**gdas.to_dict(), "batch_size": 256}
    darts_nasnet = load_config("configs/search-opts/DARTS-NASNet-CIFAR.config")
    assert (darts_nasnet.epochs, darts_nasnet.decay, darts_nasnet.batch_size, darts_nasnet.eta_min) == (50, 0.0003, 64, 0.001)
    hyper = load_config("configs/nas-benchmark/hyper-opts/200E.config")
    assert (hyper.LR, hyper.eta_min, hyper.epochs, hyper.decay, hyper.batch_size, hyper.nesterov) == (
        0.1, 0.0, 200, 0.0005, 256, True
    )
    cifar = load_config("configs/opts/NAS-CIFAR.config")
    assert OPT_KEYS <= set(cifar)
    assert (cifar.LR, cifar.eta_min, cifar.epochs, cifar.warmup, cifar.decay, cifar.auxiliary) == (
        0.025, 0.0, 295, 5, 0.0005, 0.4
    )
    imagenet = load_config("configs/opts/NAS-IMAGENET.config")
    assert (imagenet.LR, imagenet.epochs, imagenet.warmup, imagenet.decay) == (0.1, 245, 5, 0.00003)
    assert (imagenet.criterion, imagenet.label_smooth, imagenet.auxiliary) == ("SmoothSoftmax", 0.1, 0.4)


@pytest.mark.parametrize("file_name, name", [("GDAS", "GDAS"), ("GDASFRC", "GDAS_FRC"), ("DARTS", "DARTS")])
def test_nasnet_supernet_configs(file_name, name):
    config = load_config(f"configs/search-archs/{file_name}-NASNet-CIFAR.config")
    assert config.to_dict() == {
        "super_type": "nasnet-super", "name": name, "C": 16, "N": 2, "steps": 4, "multiplier": 4, "stem_multiplier": 3,
    }


@pytest.mark.parametrize("genotype", GENOTYPES + ["none"])
def test_evaluation_network_configs(genotype):
    expected_genotype = None if genotype == "none" else genotype
    cifar = load_config(f"configs/archs/NAS-CIFAR-{genotype}.config")
    assert cifar.to_dict() == {
        "super_type": "infer-nasnet.cifar", "genotype": expected_genotype, "dataset": "cifar",
        "ichannel": 33 if genotype == "none" else 36, "layers": 6, "stem_multi": 3, "auxiliary": True,
        "drop_path_prob": 0.2,
    }
    imagenet = load_config(f"configs/archs/NAS-IMAGENET-{genotype}.config")
    assert imagenet.to_dict() == {
        "super_type": "infer-nasnet.imagenet", "genotype": expected_genotype, "dataset": "imagenet",
        "ichannel": 50, "layers": 4, "auxiliary": True, "drop_path_prob": 0.0,
    }


def test_values_may_be_strings_numbers_or_json_literals(tmp_path):
    path = write_config(tmp_path, {
        "a": ["int", 36], "b": ["float", 1], "c": ["bool", True], "d": ["bool", "false"], "e": ["bool", 0],
        "f": ["str", 7], "g": ["none", None], "h": ["float", ["0.5", 2]], "i": ["str", []], "j": ["bool", "TRUE"],
    })
    config = load_config(path)
    assert config.to_dict() == {
        "a": 36, "b": 1.0, "c": True, "d": False, "e": False, "f": "7", "g": None, "h": [0.5, 2.0], "i": [],
        "j": True,
    }
    assert type(config.b) is float


def test_attribute_item_and_mapping_access(tmp_path):
    config = load_config(write_config(tmp_path, {"LR": ["float", "0.025"], "name": ["str", "GDAS"]}))
    assert config.LR == config["LR"] == config.get("LR") == 0.025
    assert config.get("missing", 3) == 3
    assert list(config.keys()) == ["LR", "name"] and "name" in config and "x" not in config
    assert config.type_of("LR") == "float"
    assert config.source == str(tmp_path / "my.config")
    assert not hasattr(config, "missing")
    with pytest.raises(MissingConfigKeyError, match="'missing' not found in .*my.config; available keys: LR, name"):
        config.missing
    with pytest.raises(KeyError):
        config["missing"]
    with pytest.raises(ConfigError, match="read-only"):
        config.LR = 0.1
    assert copy.deepcopy(config) == config
    restored = pickle.loads(pickle.dumps(config))
    assert restored == config and restored.type_of("name") == "str"
    assert "LR=0.025" in repr(config)


def test_extra_values_are_merged_and_exported_as_plain_data(tmp_path):
    path = write_config(tmp_path, {"LR": ["float", "0.025"], "class_num": ["int", "5"]})
    config = load_config(path, extra={"class_num": 10, "xshape": (1, 3, 32, 32)})
    assert config.class_num == 10
    assert config.xshape == (1, 3, 32, 32)
    assert config.to_dict() == {"LR": 0.025, "class_num": 10, "xshape": [1, 3, 32, 32]}
    assert config.type_of("class_num") == "int" and config.type_of("xshape") is None


def test_overrides_are_parsed_to_the_type_of_the_key(tmp_path):
    path = write_config(tmp_path, {
        "LR": ["float", "0.025"], "epochs": ["int", "250"], "nesterov": ["bool", "1"], "name": ["str", "GDAS"],
        "ids": ["int", ["1", "2"]],
    })
    config = load_config(path, overrides=["LR=0.1", "epochs = 3", "nesterov=false", "name=DARTS", "ids=4,5,6"])
    assert config.to_dict() == {"LR": 0.1, "epochs": 3, "nesterov": False, "name": "DARTS", "ids": [4, 5, 6]}
    config = load_config(path, overrides={"LR": "0.5", "epochs": 7, "ids": [9]})
    assert (config.LR, config.epochs, config.ids) == (0.5, 7, [9])


def test_overrides_of_extra_values(tmp_path):
    path = write_config(tmp_path, {"LR": ["float", "0.025"]})
    config = load_config(path, extra={"class_num": 10, "xshape": (1, 3, 32, 32)},
                         overrides={"class_num": "100", "xshape": (1, 3, 16, 16)})
    assert (config.class_num, config.xshape) == (100, (1, 3, 16, 16))
    with pytest.raises(ConfigError, match="'xshape'.*holds a tuple value that cannot be parsed from text"):
        load_config(path, extra={"xshape": (1, 3, 32, 32)}, overrides=["xshape=1,3"])


def test_config_paths_resolve_from_any_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_config_path("configs/opts/NAS-CIFAR.config") == CONFIG_DIR / "opts" / "NAS-CIFAR.config"
    assert resolve_config_path("opts/NAS-CIFAR.config") == CONFIG_DIR / "opts" / "NAS-CIFAR.config"
    local = tmp_path / "configs" / "opts"
    local.mkdir(parents=True)
    write_config(local, {"LR": ["float", "9"]}, name="NAS-CIFAR.config")
    assert load_config("configs/opts/NAS-CIFAR.config").LR == 9.0


@pytest.mark.parametrize(
    "content, pattern",
    [
        ({"LR": ["double", "0.1"]}, r"my.config: key 'LR': unknown type 'double'; expected one of str, int, float, bool, none"),
        ({"epochs": ["int", "ten"]}, r"my.config: key 'epochs' of type int: expected an integer .*got 'ten'"),
        ({"epochs": ["int", "2.5"]}, r"key 'epochs' of type int: expected an integer"),
        ({"LR": ["float", "fast"]}, r"key 'LR' of type float: expected a number .*got 'fast'"),
        ({"nesterov": ["bool", "yes"]}, r"key 'nesterov' of type bool: expected \"0\", \"1\", \"true\".*got 'yes'"),
        ({"genotype": ["none", "GDAS"]}, r"key 'genotype' of type none: expected \"none\" or null, got 'GDAS'"),
        ({"train": ["int", ["0", "5", "x7"]]}, r"key 'train' of type int: expected a list of int values .*item 2 is not, got 'x7'"),
        ({"train": ["int", [["1"]]]}, r"key 'train' of type int: .*item 0 is not"),
        ({"LR": ["float", {"v": 1}]}, r"key 'LR' of type float: expected a number"),
        ({"LR": 0.1}, r"key 'LR': expected a \[type, value\] pair"),
        ({"LR": ["float"]}, r"key 'LR': expected a \[type, value\] pair"),
        (["float", "0.1"], r"my.config: expected a JSON object"),
        ('{"LR": ["float", "0.1"],\n "epochs": ["int" "5"]}', r"my.config: invalid JSON at line 2, column"),
    ],
)
def test_malformed_files_name_the_file_the_key_and_what_was_expected(tmp_path, content, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_config(write_config(tmp_path, content))


def test_missing_file_names_both_places_tried(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_config("configs/opts/NOPE.config")
    message = str(caught.value)
    assert str(tmp_path / "configs" / "opts" / "NOPE.config") in message
    assert str(CONFIG_DIR / "opts" / "NOPE.config") in message


@pytest.mark.parametrize(
    "overrides, pattern",
    [
        (["momentum=0.8"], r"override 'momentum' for .*my.config: unknown key; the keys of this config are LR, epochs"),
        ({"momentum": 0.8}, r"unknown key"),
        (["epochs=ten"], r"override 'epochs' for .*my.config: key of type int: expected an integer .*got 'ten'"),
        (["LR"], r"override 'LR': expected the form key=value"),
        (["=3"], r"expected the form key=value"),
    ],
)
def test_bad_overrides(tmp_path, overrides, pattern):
    path = write_config(tmp_path, {"LR": ["float", "0.025"], "epochs": ["int", "250"]})
    with pytest.raises(ConfigError, match=pattern):
        load_config(path, overrides=overrides)


def test_configs_built_in_code():
    config = Config({"C": 16}, {"C": "int"})
    assert config.C == 16 and config.source is None
