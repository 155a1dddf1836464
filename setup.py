"""Install xautodl: `pip install -e .` (or the original tool's `python setup.py install`)."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def package_files(root: Path) -> list[str]:
    """All files under a package-data folder, relative to the `xautodl` package."""
    return [str(p.relative_to(HERE / "xautodl")) for p in root.rglob("*") if p.is_file()]


setup(
    name="xautodl",
    version="2.0.0.dev0",
    description="GDAS / DARTS neural architecture search on NAS-Bench-201 and the NASNet space, on current PyTorch",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["xautodl", "xautodl.*"]),
    package_data={"xautodl": package_files(HERE / "xautodl" / "configs")},
    install_requires=[
        "torch>=2.1",
        "torchvision",
        "numpy",
        "tqdm",
        "tensorboard",
        "nats_bench",
        "gdown",
        "scikit-learn",
        "matplotlib",
        "graphviz",
    ],
    # tf: the TensorFlow GDAS (exps-tf/GDAS.py, xautodl.tf); 2.21 coexists with torch 2.14 and this tensorboard.
    # wandb: --wandb (Weights & Biases beside TensorBoard); the tests run it offline.
    # bohb: the BOHB multi-trial search (xautodl/trials/bohb.py): Optuna's TPE sampler and Hyperband pruner.
    extras_require={"test": ["pytest", "pytest-timeout", "pytest-xdist", "wandb", "optuna>=3.0"],
                    "tf": ["tensorflow>=2.16"], "wandb": ["wandb"], "bohb": ["optuna>=3.0"]},
    license="MIT",
)
