"""The base layer: what every other layer shares, importing only the standard library, numpy and
torch (and matplotlib lazily, for figures).

``labels`` (the 7 emotions), ``language`` (which language an utterance is in), ``prompts`` (the
official C2SER prompts), ``tokens`` (special token ids and the feature layout), ``errors`` (bad
input and skip reports), ``io`` (atomic writes, the one jsonl reader), ``metrics`` and ``parse``
(pure scoring and answer parsing) and ``figures``. Nothing here imports another c2ser package:
the import-linter contract in ``pyproject.toml`` (run by ``make test``) keeps it so.
"""
