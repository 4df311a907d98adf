"""What a job prints: by default its own lines and clear errors; with ``--verbose``, every log.

Quiet (the default): Spark's JVM logs only errors from the moment it starts (``core.spark``
passes it ``spark-log4j2.properties`` at ``spark_log_level()``), MLflow's loggers only warnings,
and MLflow's notices (``Successfully registered model ...``, ``Created version ...``) and its
``UserWarning`` hints are not shown. Verbose: Spark and MLflow log at INFO, hints shown.

``configure_logging(True)`` exports ``SERVER_ANOMALY_VERBOSE=1``, the default of every job's
``--verbose``: the steps the main job starts through ``mlflow run``, which passes them only their
parameters, are verbose too. ``SPARK_LOG_LEVEL`` and ``MLFLOW_LOGGING_LEVEL``, when set, win.
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import logging
import os
import re
import sys
import warnings

VERBOSE_ENV = "SERVER_ANOMALY_VERBOSE"
SPARK_LOG_LEVEL_ENV = "SPARK_LOG_LEVEL"
MLFLOW_LOGGING_LEVEL_ENV = "MLFLOW_LOGGING_LEVEL"

# MLflow's own loggers, and the database migrations it runs when it creates a store.
MLFLOW_LOGGERS = ("mlflow", "alembic")
# Notices MLflow logs as warnings about how the project calls it, which a job's user cannot act on.
DEVELOPER_NOTICES = {"mlflow.pyfunc": ("Passing a Python object as `python_model`",)}
# As warnings.filterwarnings stores it, so that verbose can take it out again.
MLFLOW_USER_WARNINGS = ("ignore", None, UserWarning, re.compile(r"mlflow(\.|$)"), 0)
LOGGING_UTILS = "mlflow.utils.logging_utils"


def env_verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def add_verbose_flag(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--verbose``: show Spark's and MLflow's own log lines (default: $SERVER_ANOMALY_VERBOSE)."""
    parser.add_argument(
        "--verbose",
        action="store_true",
        default=env_verbose(),
        help="show Spark's and MLflow's own log lines, at INFO (also SERVER_ANOMALY_VERBOSE=1)",
    )
    return parser


def spark_log_level() -> str:
    """The Spark driver's log level: $SPARK_LOG_LEVEL when set, else INFO when verbose, else ERROR."""
    return (os.environ.get(SPARK_LOG_LEVEL_ENV) or ("INFO" if env_verbose() else "ERROR")).strip().upper()


def level_was_asked_for() -> bool:
    """Whether the user asked for a Spark log level (``SPARK_LOG_LEVEL`` or verbose), which then
    applies over a log4j2 configuration of their own too."""
    return bool(os.environ.get(SPARK_LOG_LEVEL_ENV)) or env_verbose()


def configure_logging(verbose: bool) -> None:
    """Set what this job, and the Spark JVM and jobs it starts, print; call it once args are parsed.

    Works whether or not MLflow is imported yet: MLflow sets its loggers up when imported, so
    the levels are applied again right after that.
    """
    if verbose:
        os.environ[VERBOSE_ENV] = "1"
    else:
        os.environ.pop(VERBOSE_ENV, None)
    _set_python_warnings(verbose)
    for name, notices in DEVELOPER_NOTICES.items():
        _set_notice_filter(logging.getLogger(name), notices, enabled=not verbose)
    if LOGGING_UTILS in sys.modules:
        _quiet_mlflow(sys.modules[LOGGING_UTILS])
    elif not any(isinstance(finder, _AfterImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport(LOGGING_UTILS, _quiet_mlflow))
    _set_mlflow_levels()


def mlflow_level() -> int:
    """MLflow's log level: $MLFLOW_LOGGING_LEVEL when set, else INFO when verbose, else WARNING."""
    chosen = os.environ.get(MLFLOW_LOGGING_LEVEL_ENV) or ("INFO" if env_verbose() else "WARNING")
    level = logging.getLevelName(chosen.strip().upper())
    return level if isinstance(level, int) else logging.WARNING


def _set_mlflow_levels() -> None:
    for name in MLFLOW_LOGGERS:
        logging.getLogger(name).setLevel(mlflow_level())


def _set_python_warnings(verbose: bool) -> None:
    if MLFLOW_USER_WARNINGS in warnings.filters:
        warnings.filters.remove(MLFLOW_USER_WARNINGS)
    if not verbose:
        warnings.filterwarnings("ignore", category=UserWarning, module=MLFLOW_USER_WARNINGS[3].pattern)


class _NoticeFilter(logging.Filter):
    def __init__(self, notices: tuple[str, ...]):
        super().__init__()
        self.notices = notices

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.notices)


def _set_notice_filter(logger: logging.Logger, notices: tuple[str, ...], enabled: bool) -> None:
    for existing in [f for f in logger.filters if isinstance(f, _NoticeFilter)]:
        logger.removeFilter(existing)
    if enabled:
        logger.addFilter(_NoticeFilter(notices))


def _quiet_mlflow(logging_utils) -> None:
    """Route MLflow's ``eprint`` notices through its logger's level, and keep our levels after
    MLflow configures its loggers (on import)."""
    original_eprint = getattr(logging_utils, "eprint", None)
    if original_eprint is None or getattr(original_eprint, "_server_anomaly", False):
        return

    def eprint(*args, **kwargs):
        # MLflow prints these notices unconditionally; they are INFO lines in all but name.
        if logging.getLogger("mlflow").isEnabledFor(logging.INFO):
            original_eprint(*args, **kwargs)

    eprint._server_anomaly = True
    logging_utils.eprint = eprint
    # Modules that imported eprint already hold their own reference to it.
    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("mlflow") and getattr(module, "eprint", None) is original_eprint:
            module.eprint = eprint
    configure = getattr(logging_utils, "_configure_mlflow_loggers", None)
    if configure is not None and not getattr(configure, "_server_anomaly", False):

        def configure_then_set_levels(*args, **kwargs):
            configure(*args, **kwargs)
            _set_mlflow_levels()

        configure_then_set_levels._server_anomaly = True
        logging_utils._configure_mlflow_loggers = configure_then_set_levels


class _AfterImport(importlib.abc.MetaPathFinder):
    """Calls ``callback(module)`` right after ``name`` is first imported, by whoever imports it."""

    def __init__(self, name: str, callback):
        self.name = name
        self.callback = callback

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        try:
            sys.meta_path.remove(self)  # once only; the real finder finds the module below
        except ValueError:  # another thread's import got here first
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None:
            return spec
        loader, callback = spec.loader, self.callback

        class Loader(importlib.abc.Loader):
            def create_module(self, spec):
                return loader.create_module(spec)

            def exec_module(self, module):
                # The real loader from here on: tracebacks read source lines through it.
                module.__loader__ = module.__spec__.loader = loader
                loader.exec_module(module)
                callback(module)

        spec.loader = Loader()
        return spec
