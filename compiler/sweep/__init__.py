"""`edgekiln sweep`: prune settings x quantization variants x formats, each point built and judged exactly
as `build` does, then every point timed side by side on the driver, and the latency x quality x size front.

points.py names the points and writes their recipes; worker.py builds one point (in any process); run.py
runs them through an executor (executors.py: inline, a local process pool, or Ray; ray_reaper.py ends a
local Ray's processes with the sweep) and resumes from the folder; front.py is the non-dominated set and the
choice; table.py prints it.
"""

from edgekiln.compiler.sweep.run import SweepOptions, run_sweep

__all__ = ["SweepOptions", "run_sweep"]
