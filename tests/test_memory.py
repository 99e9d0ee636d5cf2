"""Importing cnnlab leaves the C library's memory settings alone; cnnlab.keep_freed_memory()
(called by the command line and by fit) keeps freed memory for the next step on glibc."""

import os
import subprocess
import sys

import pytest

from cnnlab.kernels import memory


def test_opting_out_or_the_users_own_malloc_settings_leave_malloc_alone():
    assert memory.keep_freed_memory({"CNNLAB_KEEP_FREED_MEMORY": "0"}) is False
    for name in memory.USER_SETTINGS:
        assert memory.keep_freed_memory({name: "65536"}) is False


@pytest.mark.skipif(not memory.is_glibc(), reason="the thresholds are glibc's")
def test_thresholds_are_raised_on_glibc():
    assert memory.keep_freed_memory({}) is True


@pytest.mark.skipif(not memory.is_glibc(), reason="the thresholds are glibc's")
def test_training_steps_reuse_the_memory_of_the_step_before():
    # Minor page faults over ten small training steps: each new page the OS hands out is one.
    code = (
        "import os, resource, numpy as np, cnnlab\n"
        "if os.environ.get('KEEP') == '1':\n"
        "    cnnlab.keep_freed_memory()\n"
        "from cnnlab import nn\n"
        "from cnnlab.nn import functional as F\n"
        "m = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),\n"
        "                  nn.Flatten(), nn.Linear(8 * 14 * 14, 10))\n"
        "x = cnnlab.Tensor(np.ones((64, 1, 28, 28), np.float32))\n"
        "y = np.zeros(64, dtype=np.int64)\n"
        "def step():\n"
        "    m.zero_grad()\n"
        "    F.cross_entropy(m(x), y).backward()\n"
        "for _ in range(3):\n"
        "    step()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "for _ in range(10):\n"
        "    step()\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in memory.USER_SETTINGS}

    def faults(**extra):
        out = subprocess.run([sys.executable, "-c", code], env={**env, **extra},
                             capture_output=True, text=True, check=True).stdout
        return int(out)

    kept = faults(KEEP="1")
    assert kept < 100, kept  # ten steps need (almost) no new pages; measured: 0
    imported = faults()  # import alone changes nothing: glibc's defaults hold
    opted_out = faults(KEEP="1", CNNLAB_KEEP_FREED_MEMORY="0")
    if opted_out >= 1000:  # glibc's defaults here hand memory back (measured: ~20,000)
        assert kept * 10 < opted_out, (kept, opted_out)
        assert imported * 2 > opted_out, (imported, opted_out)
