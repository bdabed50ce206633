"""A cold start waits for every module the server imports, so it imports only what listening,
the handshake and an eval need; the rest comes when something needs it, and then behaves as
if it had been there from the start (for ``logging``: the set-up user code finds)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import hxpy
from hxpy import codec, logs
from hxpy.values import Marker
from pyhost.errors import PythonError

from .conftest import session

CONTAINER = str(Path(hxpy.__file__).parent.parent)
# What the server (and an eval of plain values) does without: each costs a cold start time.
LAZY = ("logging", "typing", "traceback", "linecache", "re", "enum", "socket", "signal",
        "hxpy.columns", "hxpy.exttypes", "hxpy.extcodes", "hxpy.grid", "hxpy.values",
        "hxpy.frames")


def fresh(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a new interpreter that finds hxpy as the image does."""
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": CONTAINER})


def loaded_after(statement: str) -> list[str]:
    done = fresh(f"import sys\n{statement}\nprint(*sorted(set(sys.argv[1:]) & set(sys.modules)))",
                 *LAZY)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_importing_the_server_imports_none_of_the_lazy_modules():
    assert loaded_after("import hxpy.server") == []


def test_the_lazy_modules_are_still_imported_somewhere():
    # The list above would pass vacuously if a name were misspelled: each is a real module,
    # and encoding a Haystack value loads the table's.
    assert set(loaded_after("import logging, traceback, linecache, typing, socket, signal\n"
                            "import re, enum\nfrom hxpy import codec\n"
                            "from hxpy.values import Marker\ncodec.encode(Marker())")) == set(LAZY)


def test_a_job_s_runtime_and_the_haystack_table_import_no_typing_or_logging():
    # They come after the start, but still before a cold job's answer.
    assert loaded_after("import hxpy.server, hxpy.runtime.job\n"
                        "from hxpy import codec\nfrom hxpy.values import Marker\n"
                        "codec.encode(Marker())") == [
        "enum", "hxpy.columns", "hxpy.extcodes", "hxpy.exttypes", "hxpy.frames", "hxpy.grid",
        "hxpy.values", "re"]


def test_a_session_answers_an_eval_without_them(launcher):
    with session(launcher) as s:
        assert s.eval(f"sorted(set(__import__('sys').modules) & {set(LAZY)!r})") == []


# -- the Haystack table, loaded by the codec when a value needs it ---------------------------

def test_the_registry_of_ext_codes_is_still_codec_s():
    done = fresh("import sys\nfrom hxpy import codec\nassert 'enum' not in sys.modules\n"
                 "from hxpy.codec import ExtCode\nprint(int(codec.ExtCode.GRID), ExtCode.__name__, "
                 "'ExtCode' in codec.__all__)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(int(codec.ExtCode.GRID)), "ExtCode", "True"]


def test_decoding_an_ext_value_loads_the_table():
    done = fresh("import sys\nfrom hxpy import codec\n"
                 "assert 'hxpy.exttypes' not in sys.modules\n"
                 "print(repr(codec.decode(bytes.fromhex(sys.argv[1]))))",
                 codec.encode(Marker()).hex())
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == repr(Marker())


def test_encoding_an_ext_value_loads_the_table():
    done = fresh("import sys\nfrom hxpy import codec\nfrom hxpy.values import Marker\n"
                 "assert 'hxpy.exttypes' not in sys.modules\n"
                 "print(codec.encode([Marker()]).hex())")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == codec.encode([Marker()]).hex()


def test_a_str_subclass_with_an_encoder_is_refused_as_a_key_before_the_table_loads():
    # Uri (a str) packs as an ext value, which a msgpack map cannot take as a key.
    done = fresh("import sys\nfrom hxpy import codec\nfrom hxpy.values import Uri\n"
                 "assert 'hxpy.exttypes' not in sys.modules\n"
                 "try:\n    codec.encode({Uri('x'): 1})\n"
                 "except codec.MarshalError as exc:\n    print(exc)\n")
    assert done.returncode == 0, done.stderr
    assert "dict key" in done.stdout and "Uri" in done.stdout


def test_locating_what_cannot_be_encoded_looks_inside_a_frame_before_the_table_loads():
    frame = pd.DataFrame({"a": [1, 2], "b": [object(), object()]})
    expected = codec.locate_unmarshallable(frame, "df")
    assert expected is not None and "df" in expected
    done = fresh("import sys\nimport pandas as pd\nfrom hxpy import codec\n"
                 "assert 'hxpy.exttypes' not in sys.modules\n"
                 "frame = pd.DataFrame({'a': [1, 2], 'b': [object(), object()]})\n"
                 "print(codec.locate_unmarshallable(frame, 'df'))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected


# -- logging: set up when first imported -------------------------------------------------------

def test_the_server_log_imports_logging_only_for_a_record_it_emits():
    done = fresh(
        "import sys\nfrom hxpy import logs\n"
        "logs.configure_logging('INFO')\n"
        "logs.own_log(logs.DEBUG, 'not %s', 'this')\n"
        "assert 'logging' not in sys.modules\n"
        "logs.own_log(logs.INFO, 'said %s', 'this')\n"
        "import logging\n"
        "print(logging.getLogger('hxpy').propagate, len(logging.root.handlers),\n"
        "      type(logging.root.handlers[0].stream).__name__, logging.root.level,\n"
        "      type(logging.__loader__).__name__, type(logging.__spec__.loader).__name__,\n"
        "      any(type(f).__module__ == 'hxpy.logs' for f in sys.meta_path))\n")
    assert done.returncode == 0, done.stderr
    assert done.stderr == "hxpy INFO said this\n"
    assert done.stdout.split() == ["False", "1", "_CurrentStderr", "30", "SourceFileLoader",
                                   "SourceFileLoader", "False"]


def test_logging_imported_before_the_set_up_is_set_up_at_once():
    done = fresh("import logging\nfrom hxpy import logs\nlogs.configure_logging('WARNING')\n"
                 "logging.getLogger('user').warning('to %s', 'stderr')\n"
                 "logging.getLogger('hxpy').warning('own')\n")
    assert done.returncode == 0, done.stderr
    assert done.stderr == "WARNING:user:to stderr\nhxpy WARNING own\n"


def test_an_unknown_log_level_is_refused_when_the_server_starts(tmp_path):
    key = tmp_path / "key"
    key.write_text("k" * 32)
    done = subprocess.run(
        [sys.executable, "-m", "hxpy"], capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": CONTAINER, "HXPY_KEY_FROM": f"file:{key}",
             "HXPY_LISTEN": f"unix:{tmp_path / 'sock'}", "HXPY_LOG_LEVEL": "loud"})
    assert done.returncode == 2
    assert "HXPY_LOG_LEVEL" in done.stderr and "'LOUD'" in done.stderr
    with pytest.raises(ValueError, match="unknown log level 'LOUD'"):
        logs.configure_logging("LOUD")


# What user code logs looks as it did when the set-up ran at start (these pass on both).

def test_user_logging_keeps_python_s_default_format(launcher):
    with session(launcher) as s:
        s.exec("import logging")
        s.eval("logging.getLogger('user').warning('careful: %d', 3)")
        assert s.last_output == "WARNING:user:careful: 3\n"
        s.eval("logging.warning('root too')")
        assert s.last_output == "WARNING:root:root too\n"


def test_a_user_basicconfig_finds_the_root_handler_there(launcher):
    with session(launcher) as s:
        s.exec("import logging\n"
               "logging.basicConfig(level=logging.DEBUG, format='%(levelname)s|%(message)s')")
        s.eval("logging.getLogger('user').info('quiet')")
        assert s.last_output == ""
        s.eval("logging.getLogger('user').warning('loud')")
        assert s.last_output == "WARNING:user:loud\n"


def test_a_forced_user_basicconfig_takes_over_in_later_batches_too(launcher):
    with session(launcher) as s:
        s.exec("import logging\nlogging.basicConfig(force=True, level=logging.DEBUG,\n"
               "                    format='%(levelname)s|%(name)s|%(message)s')")
        s.eval("logging.getLogger('user').info('shown')")
        assert s.last_output == "INFO|user|shown\n"
        s.eval("logging.getLogger('user').debug('later')")
        assert s.last_output == "DEBUG|user|later\n"


def test_a_user_s_first_import_of_logging_in_a_thread_finds_it_set_up(launcher):
    with session(launcher) as s:
        s.exec("import threading\nresult = []\n"
               "def work():\n"
               "    import logging\n"
               "    result.append(len(logging.root.handlers))\n"
               "    logging.getLogger('t').error('from a thread')\n"
               "worker = threading.Thread(target=work)\nworker.start()\nworker.join()")
        assert s.eval("result") == [1]  # the exec goes with this eval's batch
        assert s.last_output == "ERROR:t:from a thread\n"


# -- linecache: the sources of batches compiled before it was imported ------------------------

def test_tracebacks_show_lines_compiled_before_linecache_was_imported(launcher):
    with session(launcher) as s:
        assert s.eval("'linecache' in __import__('sys').modules") is False
        s.exec("def fails():\n    raise ValueError('boom')\n")
        assert s.eval("'linecache' in __import__('sys').modules") is False
        shown = s.eval("import io, traceback\nbuffer = io.StringIO()\n"
                       "try:\n    fails()\nexcept ValueError:\n"
                       "    traceback.print_exc(file=buffer)\nbuffer.getvalue()")
        assert "raise ValueError('boom')" in shown
        with pytest.raises(PythonError) as caught:
            s.eval("fails()")
        assert "raise ValueError('boom')" in caught.value.remote_traceback


def test_an_error_is_still_answered_when_user_code_shadows_traceback(launcher, tmp_path):
    # The server imports traceback at the first error, after user code may have put a
    # directory with its own traceback.py first on sys.path.
    (tmp_path / "traceback.py").write_text("SHADOW = True\n")
    with session(launcher) as s:
        s.exec(f"import sys\nsys.path.insert(0, {str(tmp_path)!r})")
        with pytest.raises(PythonError) as caught:
            s.eval("1 / 0")
        assert caught.value.remote_type == "ZeroDivisionError"
        assert s.eval("__import__('traceback').SHADOW") is True
        assert s.eval("1 + 1") == 2
