"""Package discovery that pyproject.toml cannot express on its own.

The command line lives in the top-level folder ``cli/`` and the bundled manifests in
``data_manifests/`` (see DESIGN.md), but both install inside the package, as
``cryoal.cli`` and ``cryoal.data_manifests``; there is never a bare top-level ``cli``.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["cryoal", "cryoal.*"]), "cryoal.cli", "cryoal.data_manifests"],
    package_dir={"cryoal": "cryoal", "cryoal.cli": "cli", "cryoal.data_manifests": "data_manifests"},
)
