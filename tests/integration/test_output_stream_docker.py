"""``eval(code, on_output=...)`` with a real container: output crosses the sandbox while the
eval runs, complete and in order, and a session without it sends no output frame."""

import time

from pyhost import py


def test_output_arrives_from_the_container_while_the_eval_runs(client):
    chunks, times = [], []

    def record(text):
        times.append(time.monotonic())
        chunks.append(text)

    code = """
import sys, time
print('first')
time.sleep(0.5)
sys.stderr.write('err\\n')
for i in range(20000):
    print(f'line {i:06d}')
sys.stdout.write('tail \\udcff')
7
"""
    expected = ("first\nerr\n" + "".join(f"line {i:06d}\n" for i in range(20000))
                + "tail \ufffd")
    with py(io=None, timeout=60) as s:
        s.eval("None")
        assert s.eval(code, on_output=record) == 7
        returned = time.monotonic()
        assert chunks[0] == "first\n" and returned - times[0] >= 0.4
        assert "".join(chunks) + s.last_output == expected
        assert max(len(chunk.encode()) for chunk in chunks) <= 65536
        # Without on_output everything comes with the reply, as before.
        assert s.eval("print('plain'); 1") == 1
        assert s.last_output == "plain\n"
