"""Counter service: seed 002's "Simple" - zero processing, returns its counter.

The payload is echoed back in size only; the work is the counter itself, which
the serve loop increments once per request.
"""

from mecserve import RequestError, Service, serve


class Counter(Service):
    name = "counter"
    max_payload = 64 * 1024

    def handle(self, op, header, payload):
        if op != "task":
            raise RequestError("unknown_op", f"counter serves op 'task', not {op!r}")
        return {"bytes": len(payload)}


if __name__ == "__main__":
    serve(Counter())
