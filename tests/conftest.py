import os
import sys

# hxpy lives in container/; make it importable when the package is not installed.
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "container"))
