"""The outputs wing: everything a run or sweep writes or shows: logging sinks (sinks), run directories (rundir),
snapshots, the embedding-space page (viewer), the sweep report (report) and its benchmark tables
(benchmark_report), W&B dashboards (dashboard) and the inspector."""
