"""Keyword spotting: spoken keyword clips and their features, few-shot episodes, the spotter.

``audio`` (the Speech Commands layout, the word and speaker splits, augmentation, log-mel
features), ``episodes`` (N-way K-shot episodes, resumable at any step), ``spotting``
(``KeywordSpotter``: enroll, classify, detect; LiteRT export).
"""
