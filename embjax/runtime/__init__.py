"""The runtime wing: what a run needs from the machine: device meshes (mesh), signals (signals), orbax checkpoints
(checkpoint), the profiler window (profiler) and host memory (hostmem)."""
