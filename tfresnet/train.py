"""``python -m tfresnet.train``: the command line of ``tfresnet.cli`` under its documented module name.

Imported, the module is also ``tfresnet.train(cfg)``: once ``tfresnet.train`` names this module
(as it does after ``import tfresnet.train``), calling it trains, as the package's lazy
``tfresnet.train`` does before.
"""

import sys
import types

from tfresnet.cli import main, run, run_eval  # noqa: F401 - the entry points


class _CallableModule(types.ModuleType):
    def __call__(self, cfg, log=print):
        from tfresnet import training  # noqa: PLC0415 - TensorFlow only when training

        return training.train(cfg, log)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    run()
