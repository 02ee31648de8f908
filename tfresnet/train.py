"""``python -m tfresnet.train``: the command line of ``tfresnet.cli`` under its documented module name."""

from tfresnet.cli import main, run, run_eval  # noqa: F401 - the entry points

if __name__ == "__main__":
    run()
