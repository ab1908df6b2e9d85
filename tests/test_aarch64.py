"""aarch64 correctness run under qemu-user (tools/aarch64.py).

Skips when ``aarch64-linux-gnu-g++`` or ``qemu-aarch64`` is not installed
(``apt-get install g++-aarch64-linux-gnu qemu-user``). The first run downloads
an aarch64 Python, wheels and TensorFlow's aarch64 library into
``build/aarch64`` (``tools/aarch64.py setup``, about 40 s); later runs take
about a minute on 2 cores, most of it loading TensorFlow's library under qemu.
Full models must be bit-identical with TFLite's reference kernels; with the
default (optimized) kernels the test models happen to be too.
"""

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


from tools import aarch64  # noqa: E402


def test_missing_tools_give_an_install_hint(monkeypatch, tmp_path):
    monkeypatch.setattr(aarch64.shutil, "which", lambda name: None)
    with pytest.raises(aarch64.SetupError, match="apt-get install g\\+\\+-aarch64-linux-gnu qemu-user"):
        aarch64.setup(tmp_path)


@pytest.mark.skipif(bool(aarch64.missing_tools()),
                    reason=f"needs {' and '.join(aarch64.missing_tools())} "
                           "(apt-get install g++-aarch64-linux-gnu qemu-user)")
def test_projection_and_models_on_aarch64_match_x86():
    res = aarch64.check([])
    # 1. core + kernel (static driver under qemu) == NumPy reference, 9 configs: minhash and
    # ternary (method ids 0, 1) with window 0 and 1, minhash with shape features (version 2),
    # hashid (method id 2), minhash with letter n-grams (version 3, base-ng4's projection),
    # ternary and minhash with a word dictionary (version 4, over the corpus's Thai)
    assert len(res["core"]) == 9 and all(c["equal"] for c in res["core"]), res["core"]
    assert {c["config"][1] for c in res["core"]} == {0, 1, 2}
    assert any(len(c["config"]) == 8 for c in res["core"])
    assert any(len(c["config"]) == 9 for c in res["core"])
    assert sum(c["config"][0] == 4 for c in res["core"]) == 2
    by_kind = {(Path(m["model"]).name, m["what"], m["op_resolver"]): m for m in res["models"]}
    assert len(by_kind) == 6, sorted(by_kind)
    for name in ("test_float.tflite", "test_int8.tflite"):
        # 2. projection-only slices: bit-identical on aarch64 and equal to the NumPy reference
        sl = by_kind[(name, "projection-only slice", "default")]
        assert sl["ok"] and sl["equal"] and sl["equals_numpy_reference"] and sl["arrays"] == 60, sl
        # 3. full models with TFLite's reference kernels: bit-identical, and required to be
        ref = by_kind[(name, "full model", "reference")]
        assert ref["ok"] and ref["equal"] and ref["identical_texts"] == ref["texts"] == 20, ref
    # 4. optimized kernels (reported, not required): the int8 model is bit-identical too,
    # the float one gives the same decisions
    i8 = by_kind[("test_int8.tflite", "full model", "default")]
    assert i8["ok"] is None and i8["equal"], i8
    fl = by_kind[("test_float.tflite", "full model", "default")]
    assert fl["float"] and fl["same_decisions"] and fl["max_abs_diff"] < 1e-5, fl
    assert res["ok"]


def test_a_reference_kernel_difference_fails_the_check(monkeypatch, tmp_path):
    """check_models marks a full model run with the reference kernels not ok when any
    output differs; with the optimized kernels the same difference is only reported."""
    import numpy as np

    def fake_dump(model, texts_file, out, op_resolver="default"):
        np.savez(out, **{"0/0": np.array([1, 2, 3], np.int8)})

    def fake_guest(cache, args, timeout=900):
        rest = [str(a) for a in args[3:]]
        for model, resolver, out in zip(rest[::3], rest[1::3], rest[2::3]):
            np.savez(out, **{"0/0": np.array([1, 2, 4], np.int8)})
        return subprocess.CompletedProcess(args, 0, "", "")

    model = tmp_path / "m.tflite"
    model.write_bytes(b"")
    monkeypatch.setattr(aarch64, "dump_outputs", fake_dump)
    monkeypatch.setattr(aarch64, "guest_python", fake_guest)
    monkeypatch.setattr(aarch64, "_float_compute", lambda path: False)
    import ondevice_nlp.benchmark as B
    monkeypatch.setattr(B, "parse_model", lambda buf, what: None)
    monkeypatch.setattr(B, "projection_submodel", lambda m: None)
    res = aarch64.check_models(Path("unused"), [model], tmp_path, ["x"],
                               op_resolvers=("default", "reference"))
    by = {m["op_resolver"]: m for m in res}
    assert by["reference"]["ok"] is False and not by["reference"]["equal"]
    assert by["default"]["ok"] is None and by["default"]["identical_texts"] == 0


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
