"""How an entry point ends its process: the exit code, and the clean-up that still runs."""

import os
import subprocess
import sys

from core.tracking import PROJECT_ROOT


def test_an_entry_point_exits_with_its_code_after_atexit_handlers_and_file_flushes(tmp_path):
    # given a process that registers an atexit handler and leaves a buffered file open
    out = tmp_path / "buffered.txt"
    script = (
        "import atexit\n"
        "from core.errors import exit_process\n"
        "atexit.register(print, 'atexit ran')\n"
        f"handle = open({str(out)!r}, 'w', buffering=1 << 16)\n"
        "handle.write('written before exit')\n"
        "exit_process(3)\n"
    )
    # when it ends through exit_process
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60
    )
    # then the code is its own, the handler ran and the file was flushed
    assert result.returncode == 3, result.stderr
    assert result.stdout.strip() == "atexit ran"
    assert out.read_text() == "written before exit"


def test_a_user_error_from_an_entry_point_is_one_line_and_exit_code_2(tmp_path):
    # given no registered model of this name in a fresh store, when promote is asked for it
    result = subprocess.run(
        [sys.executable, "-m", "training.promote", "--model-name", "no-such-model"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"},
    )
    # then
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "error: no registered model named 'no-such-model'" in result.stderr


def test_every_mlproject_entry_point_s_default_command_parses():
    # given the commands `mlflow run` builds from MLproject with every parameter at its default
    import importlib
    import shlex

    from mlflow.projects import _project_spec

    project = _project_spec.load_project(str(PROJECT_ROOT))
    parsed = []
    for name, entry in project._entry_points.items():
        argv = shlex.split(entry.compute_command({}, None))
        assert argv[:2] == ["python", "-m"], (name, argv)
        module = importlib.import_module(argv[2])
        if hasattr(module, "parse_args"):
            # then the job's own parser reads them (no unknown option, no 'none' taken literally)
            module.parse_args(argv[3:])
            parsed.append(name)
    assert {"train", "promote", "rollback", "monitor", "stream", "replay", "benchmark", "cross_validate"} <= set(parsed)
