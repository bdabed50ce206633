import os
import sys

# hxpy lives in container/; make it importable when the package is not installed.
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "container"))

# The agents of the tests' temporary homes (pyhost.runtime.agent) leave soon after their
# last run, not ten minutes later.
os.environ.setdefault("PYHOST_AGENT_IDLE", "5")
