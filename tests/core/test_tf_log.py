"""TensorFlow's native start-up noise is filtered; real errors and everything else are not."""

import os
import subprocess
import sys
import textwrap

import pytest

from bmbench.core.tf_log import NOISE, is_noise

CUINIT = ("E0000 00:00:1796279712.896825    7340 cuda_platform.cc:52] failed call to cuInit: INTERNAL: "
          "CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)")
INFO = ("I0000 00:00:1796279707.423607    7340 cpu_feature_guard.cc:227] This TensorFlow binary is "
        "optimized to use available CPU instructions in performance-critical operations.")
ABSL = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
REAL = "E0000 00:00:1796279712.896825    7340 gpu_device.cc:12] could not allocate 2.0GiB on device 0"


def test_start_up_notices_are_noise_and_errors_are_not():
    assert is_noise(INFO, gpu_present=False) and is_noise(ABSL + "\n", gpu_present=True)
    assert is_noise(CUINIT, gpu_present=False)
    assert not is_noise(CUINIT, gpu_present=True)  # a GPU that fails to start is news
    assert not is_noise(REAL, gpu_present=False)
    assert not is_noise("Traceback (most recent call last):", gpu_present=False)
    assert not is_noise("bmbench: training on 1 CPU device(s), float32", gpu_present=False)


def _python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)


def test_the_filter_forwards_every_other_line_written_to_fd_2():
    done = _python(f"""
        import os, sys
        from bmbench.core.tf_log import filtered_stderr
        with filtered_stderr():
            os.write(2, {(INFO + chr(10)).encode()!r})
            os.write(2, {(REAL + chr(10)).encode()!r})
            sys.stderr.write("python line\\n")
            os.write(2, b"no newline at the end")
        print("done")
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "done\n"
    assert done.stderr.splitlines() == [REAL, "python line", "no newline at the end"]


def _noise_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines()
            if any(p.match(line) for p in NOISE) or "cuInit" in line or "cpu_feature_guard" in line]


def test_importing_tensorflow_through_bmbench_prints_no_start_up_noise():
    code = "import bmbench, keras, tensorflow as tf; print(len(tf.config.list_physical_devices()))"
    loud = _python(code, BMBENCH_TF_LOG="1")
    assert loud.returncode == 0, loud.stderr
    if not _noise_lines(loud.stderr):
        pytest.skip("this TensorFlow prints no native start-up noise here")
    quiet = _python(code, BMBENCH_TF_LOG="0")
    assert quiet.returncode == 0, quiet.stderr
    assert _noise_lines(quiet.stderr) == []


def test_a_deep_command_prints_no_tensorflow_noise(tmp_path):
    recipe = tmp_path / "cnn.yaml"
    recipe.write_text("name: tinycnn\n"
                      "dataset: {kind: synthetic, n_per_class: 6, render_size: 48, image_size: 32}\n"
                      "split: {test: 0.25, val: 0.2}\nmodel: {family: cnn, depth: 1, width: 4}\ntrain: {epochs: 1}\n")
    env = {**os.environ, "BMBENCH_CACHE": str(tmp_path / "cache"), "BMBENCH_RESULTS": str(tmp_path / "r")}
    env.pop("BMBENCH_TF_LOG", None)
    done = subprocess.run([sys.executable, "-m", "bmbench.cli", "run", str(recipe)], capture_output=True,
                          text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "bmbench: stored run" in done.stderr
    assert _noise_lines(done.stderr) == [], done.stderr
    assert not [line for line in done.stderr.splitlines() if line[:1] in "EWF" and line[1:5].isdigit()]
