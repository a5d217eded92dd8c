"""MLflow's monitor of CPU, memory, disk, network and (with NVIDIA's library and a GPU) GPU
use, logged as ``system/…`` metrics on a trial's run from a thread of its own while it
trains (``tracking.system_metrics`` in the study file)."""

from __future__ import annotations

from harness.config import Study
from harness.tracking.credentials import for_mlflow


class SystemMetrics:
    def __init__(self) -> None:
        self._monitor = None

    def start(self, run_id: str, *, study: Study | None, uri: str, resumed: bool) -> None:
        """Start sampling into ``run_id``, if the study asks for it and it is not running."""
        if study is None or not study.tracking.system_metrics or self._monitor is not None:
            return
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        self._monitor = SystemMetricsMonitor(
            run_id, sampling_interval=study.tracking.system_metrics_interval_s,
            resume_logging=resumed, tracking_uri=for_mlflow(uri))
        self._monitor.start()

    def stop(self) -> None:
        if self._monitor is not None:
            self._monitor.finish()  # joins its thread and flushes what it has sampled
            self._monitor = None
