"""Progress lines (done/total, percentage, rate, time left) and the rule's log file.

The clock is injected, so every figure below is computed by hand.
"""

from __future__ import annotations

import logging
import math
import subprocess
import sys
import textwrap

import pytest

from echolatent.progress import Progress, duration


class FakeClock:
    """A clock that stands still until the test moves it."""

    def __init__(self, now: float = 100.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return FakeClock()


def test_rate_percentage_and_time_left(clock):
    progress = Progress(5000, "frames", "encoding", clock=clock)
    clock.now += 5.0
    progress.advance(1200)
    assert progress.rate == 240.0                     # 1,200 frames in 5 s
    assert progress.eta == pytest.approx(3800 / 240)  # 15.83 s left, shown as 0:16
    assert progress.status() == "1,200/5,000 frames (24 %), 240 frames/s, ETA 0:16"


def test_the_last_line_gives_the_time_taken(clock):
    progress = Progress(5000, "frames", "encoding", clock=clock)
    clock.now += 20.0
    progress.advance(5000)
    assert progress.eta == 0.0
    assert progress.status() == "5,000/5,000 frames (100 %), 250 frames/s, in 0:20"


def test_a_resumed_job_measures_its_rate_on_its_own_work(clock):
    # 2 of 10 epochs were done by an earlier run; this one does 2 more in 60 s
    progress = Progress(10, "epochs", "training", done=2, clock=clock)
    clock.now += 60.0
    progress.advance(2)
    assert progress.rate == pytest.approx(2 / 60)
    assert progress.eta == pytest.approx(6 * 30)      # 6 epochs at 30 s each: 3:00
    assert progress.status() == "4/10 epochs (40 %), 0.0333 epochs/s, ETA 3:00"


def test_unknown_rate_before_any_time_or_work(clock):
    progress = Progress(10, "sequences", "correcting", clock=clock)
    assert math.isnan(progress.rate)
    assert progress.status() == "0/10 sequences (0 %), ETA ?"
    clock.now += 3.0
    assert progress.rate == 0.0 and math.isnan(progress.eta)
    assert progress.status() == "0/10 sequences (0 %), 0 sequences/s, ETA ?"


def test_percentage_is_rounded_down(clock):
    progress = Progress(1000, "frames", "encoding", clock=clock)
    progress.advance(999)
    assert "(99 %)" in progress.status()  # 99.9 %: not done, so never "100 %"


@pytest.mark.parametrize("seconds, text", [(0, "0:00"), (15.83, "0:16"), (59.6, "1:00"), (180, "3:00"),
                                           (3725, "1:02:05"), (math.nan, "?"), (math.inf, "?")])
def test_duration(seconds, text):
    assert duration(seconds) == text


def test_update_logs_at_most_every_every_s_and_at_the_end(clock, caplog):
    caplog.set_level(logging.INFO, logger="echolatent")
    progress = Progress(100, "sequences", "correcting shard-0.h5", every_s=10.0,
                        logger=logging.getLogger("echolatent.test"), clock=clock)
    for _ in range(10):  # 10 sequences every 4 s
        clock.now += 4.0
        progress.update(10)
    progress.update(0)         # after the end: no second last line
    # lines at 12 s (3 updates after the start), 24 s, 36 s and the end (40 s)
    assert caplog.messages == [
        "correcting shard-0.h5: 30/100 sequences (30 %), 2.5 sequences/s, ETA 0:28",
        "correcting shard-0.h5: 60/100 sequences (60 %), 2.5 sequences/s, ETA 0:16",
        "correcting shard-0.h5: 90/100 sequences (90 %), 2.5 sequences/s, ETA 0:04",
        "correcting shard-0.h5: 100/100 sequences (100 %), 2.5 sequences/s, in 0:40",
    ]
    assert {record.name for record in caplog.records} == {"echolatent.test"}


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120)


def test_log_lines_warnings_and_tracebacks_reach_the_rules_log_file(tmp_path):
    # what a workflow script does: log_to first, then a stage logs, warns and fails
    log = tmp_path / "logs" / "rule.log"
    log.parent.mkdir()
    result = run_python(f"""
        import warnings
        from echolatent.stages.logs import log_to

        log_to({str(log)!r})
        import logging
        from echolatent.progress import Progress

        logging.getLogger("echolatent.stages.encode").info("encoding shard-0.h5")
        Progress(2, "frames", "encoding shard-0.h5", logger=logging.getLogger("echolatent.models")).update(2)
        logging.getLogger("echolatent.stages.encode").debug("not at INFO")
        warnings.warn("a warning")
        raise RuntimeError("a failure")
    """)
    assert result.returncode == 1
    assert result.stdout == "" and result.stderr == ""  # all of it went to the log file
    text = log.read_text()
    assert " INFO echolatent.stages.encode: encoding shard-0.h5\n" in text
    assert " INFO echolatent.models: encoding shard-0.h5: 2/2 frames (100 %)" in text
    assert "not at INFO" not in text
    assert "UserWarning: a warning" in text
    assert "Traceback" in text and "RuntimeError: a failure" in text


def test_importing_the_library_configures_no_logging_and_changes_no_environment():
    result = run_python("""
        import logging, os
        before = dict(os.environ)
        import echolatent.progress, echolatent.stages.logs
        import echolatent.stages.ingest, echolatent.stages.shape, echolatent.stages.train
        import echolatent.stages.encode, echolatent.stages.temporal
        import echolatent.ingest.shard, echolatent.models.training, echolatent.models.shard_encoding
        import echolatent.temporal.correction.shard
        assert dict(os.environ) == before, set(os.environ.items()) ^ set(before.items())
        handlers = [(name, logger.handlers) for name, logger in logging.Logger.manager.loggerDict.items()
                    if name.startswith("echolatent") and getattr(logger, "handlers", None)]
        assert not logging.getLogger().handlers and not handlers, handlers
    """)
    assert result.returncode == 0, result.stderr[-2000:]
