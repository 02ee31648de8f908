"""The foundation every other layer imports, and which imports none of them (nor TensorFlow).

``errors`` (``BadInput``, ``TrainingError``), ``files`` (what a file is, WAV headers, writable
paths), ``registry`` (the name-to-entry table of models, tasks, optimizers, ...), ``lazy`` (lazy
package namespaces).
"""
