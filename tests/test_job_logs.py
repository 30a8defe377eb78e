"""Rule logs keep every attempt of a job, and a job sent SIGTERM logs it, cleans up and fails (status 143)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest

from echolatent.stages.logs import attempts_file

SCRIPT = '''
from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)

import logging
from pathlib import Path

logging.getLogger("job").info(f"epoch 1 of attempt {snakemake.resources.attempt}")
if not Path("failed-once").exists():
    Path("failed-once").touch()
    raise RuntimeError("out of memory, say")
Path(snakemake.output[0]).write_text("done")
'''


@pytest.mark.slow
def test_a_retried_job_keeps_the_log_of_its_first_attempt(tmp_path):
    (tmp_path / "job.py").write_text(SCRIPT)
    (tmp_path / "Snakefile").write_text(textwrap.dedent("""
        rule job:
            output: "out.txt"
            log: "logs/job.log"
            resources: attempt=lambda wildcards, attempt: attempt  # as the workflow's job_resources gives
            script: "job.py"
    """))
    result = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--retries", "1"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    log = (tmp_path / "logs/job.log").read_text()
    first, second = log.index("=== attempt 1 "), log.index("=== attempt 2 ")
    assert first < log.index("epoch 1 of attempt 1") < log.index("RuntimeError: out of memory, say") < second
    assert second < log.index("epoch 1 of attempt 2")
    assert attempts_file(tmp_path / "logs/job.log").read_text() == log
    # a new run of the job (attempt 1 again) starts its history afresh
    (tmp_path / "out.txt").unlink()
    result = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    log = (tmp_path / "logs/job.log").read_text()
    assert log.count("=== attempt") == 1 and "attempt 2" not in log


def test_sigterm_is_logged_cleans_up_and_fails(tmp_path):
    target = tmp_path / "result.h5"
    code = textwrap.dedent(f"""
        import sys, time
        from echolatent.stages.logs import log_to
        log_to({str(tmp_path / 'job.log')!r}, attempt=1)
        from echolatent.io.atomic import atomic_path
        with atomic_path({str(target)!r}) as tmp:
            tmp.write_text("half written")
            print("writing", flush=True, file=sys.__stdout__)
            time.sleep(60)
    """)
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "writing"
    time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 143
    assert "received SIGTERM" in (tmp_path / "job.log").read_text()
    assert not target.exists() and [p.name for p in tmp_path.iterdir()] == sorted(
        p.name for p in tmp_path.iterdir() if p.name in ("job.log", ".attempts"))
