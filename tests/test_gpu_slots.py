"""Device slots: concurrently running GPU jobs on a multi-GPU workstation each get a device of their own.

No GPU is needed: the devices are named by ``ECHOLATENT_GPUS`` (fake ids), and what is checked is
the ``CUDA_VISIBLE_DEVICES`` each job sets before CUDA starts, and when the jobs ran.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import pytest

from echolatent.gpu_slots import claim_device, may_have_gpu, visible_devices

CLAIM = """
import json, os, sys, time
from echolatent.models.device import resolve_device
start = time.time()
resolve_device("auto")  # the path every network rule takes
got = time.time()
time.sleep(float(sys.argv[2]))
json.dump({"device": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": got, "end": time.time(),
           "asked": start}, open(sys.argv[1], "w"))
"""


def test_the_devices_come_from_the_environment():
    assert visible_devices({"ECHOLATENT_GPUS": "2, 3"}) == ["2", "3"]
    assert visible_devices({"CUDA_VISIBLE_DEVICES": "0,1", "PATH": ""}) == ["0", "1"]
    assert visible_devices({"ECHOLATENT_GPUS": "4,5", "CUDA_VISIBLE_DEVICES": "0,1"}) == ["4", "5"]
    # one device already chosen (SLURM's, or the user's): nothing to spread over
    assert visible_devices({"CUDA_VISIBLE_DEVICES": "1", "PATH": ""}) == []


def test_a_machine_may_have_a_gpu_unless_none_can_be_there(tmp_path):
    bare = tmp_path / "dev"
    bare.mkdir()
    empty_path = str(tmp_path / "bin")
    assert not may_have_gpu({"PATH": empty_path}, dev=bare)            # no driver: no GPU
    assert may_have_gpu({"PATH": empty_path, "ECHOLATENT_GPUS": "1"}, dev=bare)
    assert may_have_gpu({"PATH": empty_path, "CUDA_VISIBLE_DEVICES": "0"}, dev=bare)
    (bare / "nvidia0").touch()
    assert may_have_gpu({"PATH": empty_path}, dev=bare)                # the driver's device file
    for hidden in ("", "-1", " , "):
        assert not may_have_gpu({"PATH": empty_path, "CUDA_VISIBLE_DEVICES": hidden}, dev=bare)
    (bare / "nvidia0").unlink()
    (tmp_path / "bin").mkdir()
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.write_text("#!/bin/sh\n")
    smi.chmod(0o755)
    assert may_have_gpu({"PATH": empty_path}, dev=bare)                # nvidia-smi on the PATH


def test_nothing_is_claimed_under_slurm_or_with_one_device(tmp_path):
    environ = {"ECHOLATENT_GPUS": "0,1", "SLURM_JOB_ID": "42"}
    assert claim_device(tmp_path, environ=environ) is None and "CUDA_VISIBLE_DEVICES" not in environ
    environ = {"ECHOLATENT_GPUS": "3"}
    assert claim_device(tmp_path, environ=environ) is None and "CUDA_VISIBLE_DEVICES" not in environ
    assert not list(tmp_path.iterdir())


def run_claims(tmp_path, n, hold, devices="5,7"):
    env = dict(os.environ, ECHOLATENT_GPUS=devices)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    script = tmp_path / "claim.py"
    script.write_text(CLAIM)
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / f"job{i}.json"), str(hold)],
                              cwd=tmp_path, env=env) for i in range(n)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    return [json.loads((tmp_path / f"job{i}.json").read_text()) for i in range(n)]


def assert_no_device_shared_at_once(jobs):
    for i, a in enumerate(jobs):
        for b in jobs[i + 1:]:
            overlap = a["start"] < b["end"] and b["start"] < a["end"]
            assert not (overlap and a["device"] == b["device"]), (a, b)


def test_concurrent_jobs_get_different_devices_and_a_third_waits(tmp_path):
    jobs = run_claims(tmp_path, 3, hold=2.0)
    assert {job["device"] for job in jobs} == {"5", "7"}
    assert_no_device_shared_at_once(jobs)
    # two devices, three jobs: one of them waited for a slot to be freed
    assert max(job["start"] - job["asked"] for job in jobs) > 1.0
    assert (tmp_path / ".snakemake/gpu-slots/slot-0.lock").is_file()


def test_a_killed_job_frees_its_slot(tmp_path):
    env = dict(os.environ, ECHOLATENT_GPUS="0,1")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    holder = textwrap.dedent("""
        import sys, time
        from echolatent.gpu_slots import claim_device
        print(claim_device(), flush=True)
        time.sleep(600)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", holder], cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    held = [p.stdout.readline().strip() for p in procs]
    assert sorted(held) == ["0", "1"]
    victim = procs[0]
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    jobs = run_claims(tmp_path, 1, hold=0.0, devices="0,1")
    # the killed job's device, at once: the kernel dropped its lock with the process
    assert jobs[0]["device"] == held[0] and jobs[0]["start"] - jobs[0]["asked"] < 1.0
    procs[1].kill()
    procs[1].wait()


@pytest.mark.slow
def test_snakemake_runs_gpu_jobs_on_distinct_devices(tmp_path):
    """A real local run: 4 jobs that declare gpu=1, --resources gpu=2 and two (fake) GPUs."""
    (tmp_path / "claim.py").write_text(CLAIM)
    (tmp_path / "Snakefile").write_text(textwrap.dedent(f"""
        rule all:
            input: expand("job{{i}}.json", i=range(4))

        rule gpu_job:
            output: "job{{i}}.json"
            resources: gpu=1
            shell: "{sys.executable} claim.py {{output}} 2"
    """))
    env = dict(os.environ, ECHOLATENT_GPUS="5,7")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    result = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "4", "--resources", "gpu=2"],
                            cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = [json.loads((tmp_path / f"job{i}.json").read_text()) for i in range(4)]
    assert {job["device"] for job in jobs} == {"5", "7"}
    assert_no_device_shared_at_once(jobs)
    # Snakemake ran two at a time (the gpu resource): some pairs overlapped, on different devices
    assert any(a["start"] < b["end"] and b["start"] < a["end"] for i, a in enumerate(jobs) for b in jobs[i + 1:])
