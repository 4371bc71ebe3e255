"""Registry benchmark: modelshelf (local folder, SeaweedFS) against MLflow's model registry.

The same work on each backend, with the iris RandomForest (10 trees, so that the registry's
own overhead dominates, not the bytes):

1. register N versions (a different forest each: ``random_state`` = version number);
2. point the alias ``active`` at each of them in turn (N alias changes);
3. resolve ``iris@active`` N times;
4. load every version by number once (modelshelf: an empty cache, so each one downloads);
5. load ``iris@active`` N times (modelshelf: from its verified local cache).

Backends:

- modelshelf on a local folder and on SeaweedFS (``weed mini`` on 127.0.0.1), in this
  interpreter: ``Registry.push``, ``set_active``, ``resolve("iris@active")``, ``load``;
- MLflow with a sqlite backend store and local artifacts: ``mlflow.sklearn.log_model`` in a
  run + ``mlflow.register_model``, ``MlflowClient.set_registered_model_alias``,
  ``get_model_version_by_alias``, ``mlflow.sklearn.load_model("models:/iris@active")``.
  MLflow is never a dependency of modelshelf: it is installed in the benchmark's own virtual
  environment (``~/.cache/modelshelf-bench/mlflow-venv`` unless ``--venv``), created on first
  use with ``python -m venv`` and ``pip install mlflow scikit-learn``, and this same file runs
  there as a subprocess that prints its timings as JSON. The install starts first and runs
  while the modelshelf part is measured.

For MLflow, ``log_model`` gets ``serialization_format="pickle"`` (modelshelf stores joblib's
pickle; MLflow's default, skops, refuses a RandomForest without a list of trusted types) and
explicit ``pip_requirements`` (otherwise every ``log_model`` infers the environment's
requirements, which took about 6.5 s per call here and is no registry work).

Prints the mean and median time per operation and backend, and the ratios modelshelf / MLflow.

    python benchmarks/registry_vs_mlflow.py [--versions 100] [--no-seaweedfs] [--no-mlflow]
        [--venv PATH]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MODEL = "iris"
TREES = 10
JSON_MARK = "MODELSHELF_BENCH_JSON "
DEFAULT_VENV = Path("~/.cache/modelshelf-bench/mlflow-venv")
OPERATIONS = [
    ("register", "register a version"),
    ("set_alias", "set alias active"),
    ("resolve", "resolve iris@active"),
    ("load_version", "load a version (cold)"),
    ("load_alias", "load iris@active"),
]

Timings = dict[str, list[float]]


def _train(seed: int) -> Any:
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    features, labels = load_iris(return_X_y=True)
    return RandomForestClassifier(n_estimators=TREES, random_state=seed).fit(features, labels)


def _timed(timings: Timings, op: str, action: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    result = action()
    timings.setdefault(op, []).append(time.perf_counter() - start)
    return result


def _check_model(model: Any, seed: int, who: str) -> None:
    # A loaded forest must be the one registered under that number, not just any forest.
    expected = _train(seed)
    if [t.tree_.node_count for t in model.estimators_] != [
        t.tree_.node_count for t in expected.estimators_
    ]:
        raise SystemExit(f"{who} loaded the wrong model for version seed {seed}")


# -- modelshelf (this interpreter) -------------------------------------------------------


def run_modelshelf(registry: Any, versions: int) -> Timings:
    """Run the five operations on a modelshelf registry; the timings per operation."""
    timings: Timings = {}
    models = [_train(seed) for seed in range(versions)]
    pushed: list[str] = []
    for model in models:
        manifest = _timed(timings, "register", functools.partial(registry.push, MODEL, model))
        pushed.append(manifest.version)
    for version in pushed:
        _timed(timings, "set_alias", functools.partial(registry.set_active, MODEL, version))
    for _ in range(versions):
        ref = _timed(timings, "resolve", lambda: registry.resolve(f"{MODEL}@active"))
    if ref.version != pushed[-1]:
        raise SystemExit(f"modelshelf resolved {ref} instead of {pushed[-1]}")
    for version in pushed:
        _timed(timings, "load_version", functools.partial(registry.load, f"{MODEL}:{version}"))
    for _ in range(versions):
        model, _card = _timed(timings, "load_alias", lambda: registry.load(f"{MODEL}@active"))
    _check_model(model, versions - 1, "modelshelf")
    return timings


def _import_seconds(module: str, python: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    result = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


# -- MLflow (its own virtual environment) --------------------------------------------------


def mlflow_child(workdir: Path, versions: int) -> dict[str, Any]:
    """The MLflow side; runs inside the MLflow virtual environment."""
    import logging
    import warnings

    start = time.perf_counter()
    import mlflow
    import mlflow.sklearn
    import sklearn
    from mlflow import MlflowClient

    import_seconds = time.perf_counter() - start
    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.ERROR)

    start = time.perf_counter()
    db = f"sqlite:///{workdir / 'mlflow.db'}"
    mlflow.set_tracking_uri(db)
    mlflow.set_registry_uri(db)
    experiment = mlflow.create_experiment(
        "modelshelf-bench", artifact_location=(workdir / "artifacts").as_uri()
    )
    mlflow.set_experiment(experiment_id=experiment)
    client = MlflowClient()
    setup_seconds = time.perf_counter() - start

    timings: Timings = {}
    models = [_train(seed) for seed in range(versions)]
    requirements = [f"scikit-learn=={sklearn.__version__}"]
    registered: list[str] = []

    def register(model: Any) -> str:
        with mlflow.start_run():
            t0 = time.perf_counter()
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                serialization_format="pickle",
                pip_requirements=requirements,
            )
            t1 = time.perf_counter()
            version = mlflow.register_model(info.model_uri, MODEL).version
            timings.setdefault("register:log_model", []).append(t1 - t0)
            timings.setdefault("register:register_model", []).append(time.perf_counter() - t1)
        return str(version)

    for model in models:
        registered.append(_timed(timings, "register", functools.partial(register, model)))
    for version in registered:
        _timed(
            timings,
            "set_alias",
            functools.partial(client.set_registered_model_alias, MODEL, "active", version),
        )
    for _ in range(versions):
        found = _timed(
            timings, "resolve", lambda: client.get_model_version_by_alias(MODEL, "active")
        )
    if str(found.version) != registered[-1]:
        raise SystemExit(f"MLflow resolved {found.version} instead of {registered[-1]}")
    for version in registered:
        _timed(
            timings,
            "load_version",
            functools.partial(mlflow.sklearn.load_model, f"models:/{MODEL}/{version}"),
        )
    for _ in range(versions):
        model = _timed(
            timings, "load_alias", lambda: mlflow.sklearn.load_model(f"models:/{MODEL}@active")
        )
    _check_model(model, versions - 1, "MLflow")
    return {
        "timings": timings,
        "import_seconds": import_seconds,
        "setup_seconds": setup_seconds,
        "mlflow_version": mlflow.__version__,
        "sklearn_version": sklearn.__version__,
    }


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _venv_ready(venv: Path) -> bool:
    python = _venv_python(venv)
    if not python.is_file():
        return False
    probe = subprocess.run(
        [str(python), "-c", "import mlflow, sklearn"], capture_output=True, check=False
    )
    return probe.returncode == 0


def start_venv_setup(venv: Path) -> subprocess.Popen[bytes] | None:
    """Create the MLflow virtual environment in the background; ``None`` when it is ready."""
    if _venv_ready(venv):
        return None
    import sklearn

    venv.parent.mkdir(parents=True, exist_ok=True)
    log = open(venv.parent / "mlflow-venv-install.log", "wb")  # noqa: SIM115 (child owns it)
    # Same scikit-learn on both sides: the same seeds then grow the same forests.
    script = (
        f'"{sys.executable}" -m venv --clear "{venv}" && '
        f'"{_venv_python(venv)}" -m pip install --quiet --disable-pip-version-check '
        f'mlflow "scikit-learn=={sklearn.__version__}"'
    )
    print(f"installing MLflow into its own virtual environment ({venv}) in the background")
    return subprocess.Popen(["sh", "-c", script], stdout=log, stderr=subprocess.STDOUT)


def run_mlflow(venv: Path, setup: subprocess.Popen[bytes] | None, versions: int) -> dict[str, Any]:
    """Wait for the MLflow environment, run the MLflow side there, return what it measured."""
    if setup is not None:
        start = time.perf_counter()
        if setup.wait() != 0 or not _venv_ready(venv):
            log = venv.parent / "mlflow-venv-install.log"
            raise SystemExit(f"installing MLflow failed; see {log}")
        print(f"MLflow environment ready after {time.perf_counter() - start:.0f} s more")
    with tempfile.TemporaryDirectory(prefix="modelshelf-mlflow-") as tmp:
        env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
        result = subprocess.run(
            [
                str(_venv_python(venv)),
                __file__,
                "--mlflow-child",
                tmp,
                "--versions",
                str(versions),
            ],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
    for line in reversed(result.stdout.splitlines()):
        if line.startswith(JSON_MARK):
            data: dict[str, Any] = json.loads(line[len(JSON_MARK) :])
            return data
    raise SystemExit(f"the MLflow run failed (exit {result.returncode}):\n{result.stderr[-4000:]}")


# -- report ---------------------------------------------------------------------------------


def _ms(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values) * 1000, statistics.median(values) * 1000


def report(results: dict[str, Timings]) -> None:
    """Print the table of mean / median milliseconds and the ratios against MLflow."""
    backends = list(results)
    width = 22
    print()
    print(f"{'operation (mean / median ms)':<30}" + "".join(f"{b:>{width}}" for b in backends))
    for op, label in OPERATIONS:
        row = f"{label:<30}"
        for backend in backends:
            values = results[backend].get(op)
            cell = "{:.2f} / {:.2f}".format(*_ms(values)) if values else "-"
            row += f"{cell:>{width}}"
        print(row)
    total = f"{'register all (s)':<30}"
    for backend in backends:
        total += f"{sum(results[backend]['register']):>{width}.2f}"
    print(total)
    if "mlflow" not in results:
        return
    print()
    print("ratios modelshelf / MLflow (mean; below 1 means modelshelf is faster)")
    for backend in backends:
        if backend == "mlflow":
            continue
        parts = []
        for op, _label in OPERATIONS:
            mine, theirs = results[backend].get(op), results["mlflow"].get(op)
            if mine and theirs:
                parts.append(f"{op} {statistics.fmean(mine) / statistics.fmean(theirs):.3f}")
        print(f"  {backend}: " + ", ".join(parts))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--versions", type=int, default=100, help="versions to register (100)")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="MLflow's venv")
    parser.add_argument("--no-mlflow", action="store_true", help="modelshelf only")
    parser.add_argument("--no-seaweedfs", action="store_true", help="no SeaweedFS backend")
    parser.add_argument("--mlflow-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.mlflow_child is not None:
        data = mlflow_child(args.mlflow_child, args.versions)
        print(JSON_MARK + json.dumps(data, sort_keys=True), flush=True)
        return 0

    venv = args.venv.expanduser()
    setup = None if args.no_mlflow else start_venv_setup(venv)
    started = time.perf_counter()

    from _seaweed import describe_machine, seaweedfs, weed_version

    import modelshelf
    from modelshelf import Registry

    results: dict[str, Timings] = {}
    extra: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="modelshelf-regbench-") as tmp:
        work = Path(tmp)
        import sklearn

        info = {
            "modelshelf": modelshelf.__version__,
            "scikit-learn": sklearn.__version__,
            "seaweedfs": "not used" if args.no_seaweedfs else weed_version(),
            "workload": f"{args.versions} versions of iris RandomForest({TREES} trees)",
        }
        for line in describe_machine(work, info):
            print(line)
        extra["modelshelf import s"] = _import_seconds("modelshelf", sys.executable)

        print("modelshelf on a local folder ...", flush=True)
        local = Registry(work / "local-registry", cache_dir=work / "local-cache")
        results["modelshelf local"] = run_modelshelf(local, args.versions)

        if not args.no_seaweedfs:
            print("modelshelf on SeaweedFS ...", flush=True)
            with seaweedfs(work / "seaweedfs") as server:
                os.environ.update(
                    AWS_ACCESS_KEY_ID=server.access_key,
                    AWS_SECRET_ACCESS_KEY=server.secret_key,
                    AWS_DEFAULT_REGION=server.region,
                )
                remote = Registry(
                    f"s3://{server.bucket}/registry",
                    cache_dir=work / "s3-cache",
                    endpoint_url=server.endpoint_url,
                )
                results["modelshelf seaweedfs"] = run_modelshelf(remote, args.versions)

    if not args.no_mlflow:
        print("MLflow (sqlite + local artifacts) ...", flush=True)
        data = run_mlflow(venv, setup, args.versions)
        results["mlflow"] = data["timings"]
        extra["mlflow"] = data["mlflow_version"]
        extra["mlflow import s"] = round(data["import_seconds"], 2)
        extra["mlflow first use (create db + experiment) s"] = round(data["setup_seconds"], 2)
        log_model = data["timings"].get("register:log_model", [])
        register_model = data["timings"].get("register:register_model", [])
        if log_model and register_model:
            extra["mlflow register = log_model + register_model, mean ms"] = (
                f"{statistics.fmean(log_model) * 1000:.1f} + "
                f"{statistics.fmean(register_model) * 1000:.1f}"
            )
    report(results)
    print()
    for name, value in extra.items():
        shown = f"{value:.2f}" if isinstance(value, float) else value
        print(f"{name}: {shown}")
    print(f"total time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
