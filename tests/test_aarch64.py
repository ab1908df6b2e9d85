"""aarch64 correctness run under qemu-user (tools/aarch64.py).

Skips when ``aarch64-linux-gnu-g++`` or ``qemu-aarch64`` is not installed
(``apt-get install g++-aarch64-linux-gnu qemu-user``). The first run downloads
an aarch64 Python, wheels and TensorFlow's aarch64 library into
``build/aarch64`` (``tools/aarch64.py setup``, about 40 s); later runs take
about a minute on 2 cores, most of it loading TensorFlow's library under qemu.
"""

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("ondevice_nlp_tools_aarch64",
                                                  REPO / "tools" / "aarch64.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


aarch64 = _tool()


def test_missing_tools_give_an_install_hint(monkeypatch, tmp_path):
    monkeypatch.setattr(aarch64.shutil, "which", lambda name: None)
    with pytest.raises(aarch64.SetupError, match="apt-get install g\\+\\+-aarch64-linux-gnu qemu-user"):
        aarch64.setup(tmp_path)


@pytest.mark.skipif(bool(aarch64.missing_tools()),
                    reason=f"needs {' and '.join(aarch64.missing_tools())} "
                           "(apt-get install g++-aarch64-linux-gnu qemu-user)")
def test_projection_and_models_on_aarch64_match_x86():
    res = aarch64.check([])
    # 1. core + kernel (static driver under qemu) == NumPy reference, 4 configs
    assert len(res["core"]) == 4 and all(c["equal"] for c in res["core"]), res["core"]
    by_kind = {(Path(m["model"]).name, m["what"]): m for m in res["models"]}
    # 2. projection-only slices: bit-identical on aarch64 and equal to the NumPy reference
    for name in ("test_float.tflite", "test_int8.tflite"):
        sl = by_kind[(name, "projection-only slice")]
        assert sl["equal"] and sl["equals_numpy_reference"] and sl["arrays"] == 60, sl
    # 3. the int8 model is bit-identical; the float one gives the same decisions
    assert by_kind[("test_int8.tflite", "full model")]["equal"]
    fl = by_kind[("test_float.tflite", "full model")]
    assert fl["float"] and fl["same_decisions"] and fl["max_abs_diff"] < 1e-5, fl
    assert res["ok"]


@pytest.mark.skipif(shutil.which("cmake") is None or shutil.which(aarch64.CXX) is None,
                    reason="needs cmake and aarch64-linux-gnu-g++")
def test_android_cmake_project_builds_for_aarch64(tmp_path):
    """tools/android/CMakeLists.txt cross-builds a static library with no TensorFlow symbol."""
    build = tmp_path / "build"
    subprocess.run(["cmake", "-S", str(REPO / "tools" / "android"), "-B", str(build),
                    "-DCMAKE_SYSTEM_NAME=Linux", "-DCMAKE_SYSTEM_PROCESSOR=aarch64",
                    f"-DCMAKE_CXX_COMPILER={aarch64.CXX}"], check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(build)], check=True, capture_output=True)
    lib = build / "libondevice_projection.a"
    syms = subprocess.run(["aarch64-linux-gnu-nm", "-C", str(lib)], check=True,
                          capture_output=True, text=True).stdout
    assert " T OndeviceNlp_ProjectionRegistration" in syms
    undefined = [ln for ln in syms.splitlines() if " U " in ln]
    assert not [u for u in undefined if "tflite::" in u or "tensorflow" in u], undefined
    assert "OndeviceNlp_RegisterProjection" not in syms
