"""A handler that reports the interpreter it ran on (tests of python_version)."""

import sys


def which_python():
    """The running interpreter's version and the numpy/pandas it has."""
    import numpy
    import pandas

    return {"version_info": list(sys.version_info[:3]), "numpy": numpy.__version__,
            "pandas": pandas.__version__}
