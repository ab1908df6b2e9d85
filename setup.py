"""Setuptools shim: metadata lives in setup.cfg.

The only thing this file adds is compiling the OndeviceProjection shared
libraries (tools/build_ops.py: the TensorFlow op and the TFLite kernel) into
ondevice_nlp/_lib before the package files are collected, for regular builds
(`pip install .`, wheels) and editable installs (`pip install -e .`) alike.
TensorFlow must already be installed (it provides headers and libraries), so
install with `--no-build-isolation`.
"""

import importlib.util
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.develop import develop
from setuptools.dist import Distribution

HERE = Path(__file__).resolve().parent


def build_ops() -> None:
    """Run tools/build_ops.py (in-process) into ondevice_nlp/_lib."""
    spec = importlib.util.spec_from_file_location("_ondevice_nlp_build_ops",
                                                  HERE / "tools" / "build_ops.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    try:
        module.build(out_dir=HERE / "ondevice_nlp" / "_lib", verbose=True)
    except module.BuildError as e:
        sys.exit(f"error: building the ondevice_nlp custom ops failed:\n{e}")


class BuildPyWithOps(build_py):
    """build_py that first compiles the .so files, then collects them as package data."""

    def run(self):
        build_ops()
        # data_files is computed lazily from the source tree; drop any value
        # computed before the libraries existed.
        self.__dict__.pop("data_files", None)
        super().run()


class DevelopWithOps(develop):
    """Legacy `setup.py develop`."""

    def run(self):
        build_ops()
        super().run()


class BinaryDistribution(Distribution):
    """The package ships native libraries: wheels get a platform tag."""

    def has_ext_modules(self):
        return True


setup(cmdclass={"build_py": BuildPyWithOps, "develop": DevelopWithOps},
      distclass=BinaryDistribution)
