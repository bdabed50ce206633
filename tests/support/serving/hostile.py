"""A serve replica that reports as other replicas and floods its logs (tests/security)."""


def forge_reports(context, megabytes=8):
    """Runs once per replica: health and logs sent as replicas -1 and 99, then a flood of
    logs as itself; what the host answered is kept for the handler to return."""
    from hxpy.runtime import calls
    from hxpy.server import call_host

    report = context.user_data.report = []
    for index in (-1, 99, "0"):
        for method, value in ((calls.SERVE_HEALTH, {"ready": True}),
                              (calls.SERVE_LOGS, "forged line\n")):
            try:
                call_host(method, index, value)
                report.append(f"ACCEPTED {method} as {index!r}")
            except Exception as exc:
                report.append(f"REFUSED {method} as {index!r}: {exc}")
    call_host(calls.SERVE_LOGS, context.replica, "FIRST-OWN-LINE\n")
    for _ in range(megabytes):
        call_host(calls.SERVE_LOGS, context.replica, ("y" * 1023 + "\n") * 1024)
    call_host(calls.SERVE_LOGS, context.replica, "LAST-OWN-LINE\n")


def handler(context, event):
    return {"replica": context.replica, "report": context.user_data.report}
