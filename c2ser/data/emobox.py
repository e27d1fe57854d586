"""k-fold splits for EmoBox-style probing, from EmoBox annotations or from c2ser manifests.

Two sources describe the same thing, a train/test partition per fold plus a label set:

- **EmoBox** (``emo-box/EmoBox`` ``data/<ds>/``): ``label_map.json`` maps the raw annotation labels
  to class names (``{"angry": "Angry", ...}``), and ``fold_<k>/<ds>_train_fold_<k>.json`` /
  ``<ds>_test_fold_<k>.json`` map utterance id -> ``{"wav", "length", "emo", ...}``. An optional
  ``<ds>_valid_fold_<k>.json`` is used as the validation set when present. The classes are the
  label map's values in order of first appearance.
- **c2ser manifests** (jsonl with a ``fold`` field, like the demo corpus): fold ``k`` is the test
  set and every other fold is training data.

Validation (for epoch and hyper-parameter selection, never for the reported test numbers) is
carved out of the training part: speaker-disjoint when every training utterance has a speaker id
(``val_split="auto"`` or ``"speaker"``), otherwise (or with ``"random"``) a seeded random
``val_ratio`` of the utterances, which is EmoBox's rule (``split_sets``, 80/20). Speaker-disjoint
validation keeps epoch selection honest on speaker-independent folds: a random split would select
on speakers the model has already seen.

Any label outside the label set is a :class:`BadInputError` naming the file and the id.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from c2ser.core.errors import BadInputError
from c2ser.core.labels import EMOTIONS
from c2ser.data.manifest import Utterance, read_manifest


@dataclass
class FoldSplit:
    """Utterances (``emotion`` holds the class name) of one fold, and the class names in order."""

    train: list[Utterance]
    val: list[Utterance]
    test: list[Utterance]
    labels: list[str]


def _load_json(path: Path) -> object:
    if not path.is_file():
        raise BadInputError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise BadInputError(f"{path}: malformed JSON ({e.msg} at line {e.lineno})") from None


def read_label_map(path: str | Path) -> dict[str, str]:
    """EmoBox ``label_map.json``: raw annotation label -> class name."""
    path = Path(path)
    data = _load_json(path)
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise BadInputError(f"{path}: expected a JSON object mapping labels to class names")
    return {str(k): v for k, v in data.items()}


def labels_of(label_map: dict[str, str]) -> list[str]:
    """The class names of a label map, in order of first appearance (several raw labels may map
    to one class)."""
    return list(dict.fromkeys(label_map.values()))


def read_emobox_annotation(path: str | Path, label_map: dict[str, str]) -> list[Utterance]:
    """One EmoBox fold file (id -> {wav, emo|label, speaker?, ...}) as utterances whose
    ``emotion`` is the mapped class name."""
    path = Path(path)
    data = _load_json(path)
    if not isinstance(data, dict):
        raise BadInputError(f"{path}: expected a JSON object mapping ids to entries")
    out = []
    for key, entry in data.items():
        if not isinstance(entry, dict):
            raise BadInputError(f"{path}: id {key!r}: expected an object")
        raw = entry.get("emo", entry.get("label"))
        if raw not in label_map:
            raise BadInputError(
                f"{path}: id {key!r}: unknown label {raw!r} "
                f"(label_map.json has {sorted(label_map)})"
            )
        speaker = entry.get("speaker", entry.get("spk"))
        out.append(
            Utterance(
                id=str(key),
                wav=str(entry.get("wav", "")),
                emotion=label_map[raw],
                speaker=str(speaker) if speaker is not None else None,
            )
        )
    return out


def split_validation(
    train: Sequence[Utterance], ratio: float = 0.2, mode: str = "auto", seed: int = 0
) -> tuple[list[Utterance], list[Utterance]]:
    """Split ``train`` into (train, val); ``mode`` is ``auto``, ``speaker`` or ``random``.

    ``speaker`` shuffles the speakers (seeded) and moves whole speakers to validation while that
    brings the validation size closer to ``ratio`` of the data (at least one speaker, never all).
    ``random`` moves ``round(ratio * n)`` (at least 1) seeded-random utterances.
    """
    if mode not in ("auto", "speaker", "random"):
        raise ValueError(f"val_split must be auto, speaker or random, not {mode!r}")
    items = sorted(train, key=lambda u: u.id)
    rng = random.Random(seed)
    speakers = sorted({u.speaker for u in items if u.speaker is not None})
    has_speakers = len(speakers) >= 2 and all(u.speaker is not None for u in items)
    if mode == "speaker" and not has_speakers:
        raise BadInputError("val_split=speaker needs a speaker id on every training utterance")
    if len(items) < 2:
        raise BadInputError(f"cannot split {len(items)} training utterance(s) into train and val")
    if mode != "random" and has_speakers:
        rng.shuffle(speakers)
        counts = {s: sum(u.speaker == s for u in items) for s in speakers}
        target, chosen, size = ratio * len(items), set(), 0
        for s in speakers[:-1]:
            if chosen and abs(size + counts[s] - target) >= abs(size - target):
                break
            chosen.add(s)
            size += counts[s]
        return [u for u in items if u.speaker not in chosen], [
            u for u in items if u.speaker in chosen
        ]
    order = list(range(len(items)))
    rng.shuffle(order)
    n_val = min(len(items) - 1, max(1, round(ratio * len(items))))
    val_idx = set(order[:n_val])
    return [u for i, u in enumerate(items) if i not in val_idx], [items[i] for i in sorted(val_idx)]


def emobox_fold(
    emobox_dir: str | Path,
    fold: int,
    val_ratio: float = 0.2,
    val_split: str = "auto",
    seed: int = 0,
) -> FoldSplit:
    """Fold ``fold`` of an EmoBox dataset folder (``label_map.json`` + ``fold_<k>/*.json``)."""
    root = Path(emobox_dir)
    label_map = read_label_map(root / "label_map.json")
    fold_dir = root / f"fold_{fold}"

    def one(kind: str) -> Path | None:
        found = sorted(fold_dir.glob(f"*_{kind}_fold_{fold}.json"))
        if len(found) > 1:
            raise BadInputError(f"{fold_dir}: several *_{kind}_fold_{fold}.json files")
        return found[0] if found else None

    train_path, test_path, valid_path = one("train"), one("test"), one("valid")
    if train_path is None or test_path is None:
        raise BadInputError(
            f"{fold_dir}: expected <ds>_train_fold_{fold}.json and <ds>_test_fold_{fold}.json"
        )
    train = read_emobox_annotation(train_path, label_map)
    test = read_emobox_annotation(test_path, label_map)
    if valid_path is not None:
        val = read_emobox_annotation(valid_path, label_map)
    else:
        train, val = split_validation(train, val_ratio, val_split, seed)
    return FoldSplit(train, val, test, labels_of(label_map))


def manifest_fold(
    manifest: str | Path,
    fold: int,
    labels: Sequence[str] | None = None,
    val_ratio: float = 0.2,
    val_split: str = "auto",
    seed: int = 0,
) -> FoldSplit:
    """Fold ``fold`` of a jsonl manifest whose rows carry ``fold``: that fold is the test set.

    Without ``labels``, the classes are the emotions found in the manifest (the Emo-Emilia ones
    in :data:`EMOTIONS` order first, then any others alphabetically).
    """
    utts = read_manifest(manifest)
    for u in utts:
        if u.fold is None:
            raise BadInputError(f"{manifest}: id {u.id!r} has no 'fold' field")
        if u.emotion is None:
            raise BadInputError(f"{manifest}: id {u.id!r} has no 'emotion' field")
        if labels is not None and u.emotion not in labels:
            raise BadInputError(
                f"{manifest}: id {u.id!r}: unknown label {u.emotion!r} "
                f"(expected one of {list(labels)})"
            )
    folds = sorted({u.fold for u in utts})
    if fold not in folds:
        raise BadInputError(f"{manifest}: fold {fold} not found (folds: {folds})")
    if labels is None:
        found = {u.emotion for u in utts}
        labels = [e for e in EMOTIONS if e in found] + sorted(found - set(EMOTIONS))
    train, val = split_validation([u for u in utts if u.fold != fold], val_ratio, val_split, seed)
    return FoldSplit(train, val, [u for u in utts if u.fold == fold], list(labels))
