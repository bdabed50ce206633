"""The pyhost demo: define/exec/eval, the /io example and a remote error, in real containers."""

import os

from pyhost import PythonError, py


def main() -> None:
    print("1. The design's example: define, exec, eval in one round trip")
    val = (py().timeout(10)
               .define("a", 100)
               .define("b", 2)
               .exec("def mult(x, y): return x * y\n")
               .eval("mult(a, b)"))
    print(f"   mult(a, b) = {val}")

    print("2. One session across evals (with), and what the code printed")
    with py() as session:
        session.exec("import platform, os").eval("None")
        info = session.eval("print('hello from the sandbox'); "
                            "(platform.python_version(), os.getuid())")
        print(f"   python {info[0]} as uid {info[1]} in container {session.container_id[:12]}")
        print(f"   it printed: {session.last_output.strip()!r}")

        print("3. /io: the container writes, the host reads")
        session.eval("open('/io/example.txt', 'w').write('written in the container')")
        with open(os.path.join("io", "example.txt")) as written:
            print(f"   io/example.txt: {written.read()!r}")

        print("4. An error in user code, with its remote traceback; the session survives")
        try:
            session.exec("def ratio(x, y):\n    return x / y\n").eval("ratio(1, 0)")
        except PythonError as exc:
            print("   " + str(exc).replace("\n", "\n   "))
        print(f"   still usable: ratio(1, 4) = {session.eval('ratio(1, 4)')}")

        print("5. The sandbox")
        print("   network interfaces:", session.eval("sorted(os.listdir('/sys/class/net'))"))
        try:
            session.eval("open('/etc/passwd', 'a')")
        except PythonError as exc:
            print(f"   writing /etc/passwd: {exc.remote_type}: {exc.remote_message}")
    print("done: no container is left behind")


if __name__ == "__main__":
    main()
