"""The function greentrack hands to :func:`os.register_at_fork`, alone in a module that imports nothing.

The interpreter holds an at-fork function until the very end of its shutdown, and with it the
function's module globals and everything they reach, which then makes the process slower to exit
(``python benchmarks/bench_pytest_breakdown.py --only 3``). So the registered function lives
here, with nothing to reach but :data:`callbacks`, which :mod:`greentrack.measure.lifecycle`
fills while a session is open and empties when none is.
"""

callbacks: list = []  # called in a forked child, in order, while any session of the parent is open
registered = False


def after_in_child() -> None:
    """Run in the child process right after :func:`os.fork`."""
    for cb in tuple(callbacks):
        cb()
