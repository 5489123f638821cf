"""Train/test splits and forget sets, made once from a seed and persisted as JSON index files.

Each file stores its own SHA-256 (of the canonical JSON of its content). Loading recomputes it, so an
edited file is an error; a forget set records the hash of the split it was drawn from, and every checkpoint
records the split hash it was trained on, so train, retrain, unlearn and evaluate provably read the same
samples.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from mumis.data.dataset import DatasetBundle, ImageDataset
from mumis.errors import MumisError
from mumis.schema import INDEX, INT, OBJECT, SHA256, STR, check_fields, list_of, one_of, optional, read_json


def _digest(content: dict) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def publish_mode(path: str | Path) -> None:
    """Give a temporary file the permissions a normally created file would get (mkstemp makes it owner-only)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a crash never leaves half a file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        publish_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class _HashedRecord:
    """Shared save/load/hash for the two index files."""

    kind: str

    def content(self) -> dict:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in asdict(self).items()}

    @property
    def sha256(self) -> str:
        return _digest(self.content())

    def save(self, path: str | Path) -> Path:
        payload = {"kind": self.kind, "sha256": self.sha256, **self.content()}
        atomic_write_text(Path(path), json.dumps(payload))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path):
        """Read, schema-check, hash-check and content-check an index file: anything wrong is one MumisError."""
        path = Path(path)
        fix = "recreate it with `mumis split`; never edit index files by hand."
        if not path.is_file():
            raise MumisError(f"{cls.kind} file {path} does not exist; create it with `mumis split`.")
        payload = read_json(path, fix)
        if not isinstance(payload, dict) or payload.get("kind") != cls.kind:
            raise MumisError(f"{path} is not a {cls.kind} file; pass the file `mumis split` wrote for it.")
        check_fields(payload, {"kind": STR, "sha256": STR, **cls._SCHEMA}, str(path), fix,
                     optional_fields=cls._OPTIONAL)
        stored = payload.pop("sha256")
        del payload["kind"]
        record = cls(**{k: (np.asarray(v, dtype=np.int64) if k in cls._ARRAYS else v) for k, v in payload.items()})
        if stored != record.sha256:
            raise MumisError(
                f"{path} was modified after it was written (SHA-256 mismatch: file says {stored}, content hashes "
                f"to {record.sha256}). Recreate it with `mumis split`; never edit index files by hand."
            )
        record.validate(str(path), fix)
        return record

    _OPTIONAL: tuple[str, ...] = ()

    def validate(self, source: str, fix: str) -> None:
        """Content rules beyond the schema (a hash proves a file unedited, not that its content makes sense)."""
        for name in self._ARRAYS:
            values = getattr(self, name)
            if len(np.unique(values)) != len(values):
                raise MumisError(f"{source}: field {name!r} lists a sample more than once; {fix}")


@dataclass(frozen=True, eq=False)
class Split(_HashedRecord):
    """Which samples train the model and which evaluate it.

    ``train`` indexes the dataset's training pool. ``test`` indexes its official test set, or, for datasets
    without one (``mnist5k``, ``digits``) and on request, a stratified hold-out of the training pool
    (``test_from="holdout"``).
    """

    dataset: str
    seed: int
    test_from: str
    data_fingerprint: str
    train: np.ndarray = field(repr=False)
    test: np.ndarray = field(repr=False)

    kind = "split"
    _ARRAYS = ("train", "test")
    _SCHEMA = {"dataset": STR, "seed": INT, "test_from": one_of("official", "holdout"), "data_fingerprint": STR,
               "train": list_of(INDEX), "test": list_of(INDEX)}

    def validate(self, source: str, fix: str) -> None:
        super().validate(source, fix)
        if len(self.train) == 0:
            raise MumisError(f"{source}: field 'train' is empty, so no model can be trained on this split; {fix}")
        if self.test_from == "holdout" and np.intersect1d(self.train, self.test).size:
            raise MumisError(f"{source}: fields 'train' and 'test' share samples (a held-out sample must never be "
                             f"trained on); {fix}")

    def check_matches(self, bundle: DatasetBundle) -> None:
        if bundle.name != self.dataset:
            raise MumisError(f"the split was made for dataset {self.dataset!r}, not {bundle.name!r}; use the matching split file.")
        if bundle.fingerprint() != self.data_fingerprint:
            raise MumisError(
                f"the split file does not match the {bundle.name!r} data on this machine (different size or labels). "
                "Make a new split with `mumis split` for this copy of the data."
            )
        test_pool = bundle.train if self.test_from == "holdout" else bundle.test
        for name, values, pool in (("train", self.train, bundle.train), ("test", self.test, test_pool)):
            size = 0 if pool is None else len(pool)
            if len(values) and int(values.max()) >= size:
                raise MumisError(f"the split's {name!r} names sample {int(values.max())}, but {bundle.name!r} has "
                                 f"{size} samples there; make a new split with `mumis split`.")

    def materialise(self, bundle: DatasetBundle) -> tuple[ImageDataset, ImageDataset]:
        """The (train, test) datasets this split describes; refuses data it was not made for."""
        self.check_matches(bundle)
        test_pool = bundle.train if self.test_from == "holdout" else bundle.test
        return bundle.train.subset(self.train), test_pool.subset(self.test)


def make_split(bundle: DatasetBundle, seed: int = 0, holdout_fraction: float = 0.2, from_pool: bool = False) -> Split:
    """Use the official test set when there is one; otherwise, or with ``from_pool``, hold out a stratified
    ``holdout_fraction`` of the training pool (held-out data drawn like the training data, which an unlearning stop
    that compares the forget set with held-out data needs when the official test set is harder than the pool)."""
    labels = bundle.train.labels.numpy()
    if bundle.test is not None and not from_pool:
        train, test, source = np.arange(len(labels)), np.arange(len(bundle.test)), "official"
    else:
        if not 0.0 < holdout_fraction < 1.0:
            raise MumisError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
        rng = np.random.default_rng(seed)
        test_parts = []
        for c in np.unique(labels):
            members = np.flatnonzero(labels == c)
            test_parts.append(rng.choice(members, size=max(1, round(holdout_fraction * len(members))), replace=False))
        test = np.sort(np.concatenate(test_parts))
        train = np.setdiff1d(np.arange(len(labels)), test)
        source = "holdout"
    return Split(bundle.name, seed, source, bundle.fingerprint(), train.astype(np.int64), test.astype(np.int64))


@dataclass(frozen=True, eq=False)
class ForgetSet(_HashedRecord):
    """The samples a deletion request names, as positions within ``Split.train``.

    ``kind``-specific parameters (the class, the fine class, the fraction, the seed) live in ``params``;
    ``forgotten_class`` is set for full-class requests and ``forgotten_fine`` for sub-class ones, so the
    test set can be split into the forgotten part and the rest.
    """

    request: str
    params: dict
    split_sha256: str
    indices: np.ndarray = field(repr=False)
    forgotten_class: Optional[int] = None
    forgotten_fine: Optional[int] = None
    forgotten_classes: Optional[list] = None  # a sequence of class requests, merged (sequential tasks)
    forgotten_fines: Optional[list] = None

    kind = "forget-set"
    _ARRAYS = ("indices",)
    _ADDED_LATER = ("forgotten_classes", "forgotten_fines")
    _SCHEMA = {"request": STR, "params": OBJECT, "split_sha256": SHA256, "indices": list_of(INDEX),
               "forgotten_class": optional(INT), "forgotten_fine": optional(INT),
               "forgotten_classes": optional(list_of(INT)), "forgotten_fines": optional(list_of(INT))}
    _OPTIONAL = ("forgotten_class", "forgotten_fine", "forgotten_classes", "forgotten_fines")

    @property
    def target(self) -> Optional[float]:
        """The value :func:`build_forget_set` was given: the class, the fine class or the fraction (None for the
        request kinds it does not build)."""
        key = {"full_class": "class", "sub_class": "fine_class", "random": "fraction"}.get(self.request)
        return float(self.params[key]) if key else None

    def validate(self, source: str, fix: str) -> None:
        super().validate(source, fix)
        if len(self.indices) == 0:
            raise MumisError(f"{source}: field 'indices' is empty: the request names no sample; {fix}")

    def content(self) -> dict:
        # Fields added after forget files were first written stay out of the hash while unset, so every
        # forget.json written before them still loads (its stored SHA-256 still matches).
        out = super().content()
        return {k: v for k, v in out.items() if not (k in self._ADDED_LATER and v is None)}

    def check_split(self, split: Split) -> None:
        if self.split_sha256 != split.sha256:
            raise MumisError(
                f"the forget set was drawn from split {self.split_sha256[:12]}…, but the split given is "
                f"{split.sha256[:12]}…; pass the split file the forget set was made with."
            )
        if int(self.indices.max()) >= len(split.train):
            raise MumisError(f"the forget set names position {int(self.indices.max())}, but the split has only "
                             f"{len(split.train)} training samples; recreate the forget set with `mumis split`.")

    def partition(self, train: ImageDataset) -> tuple[ImageDataset, ImageDataset]:
        """(forget, retain) subsets of the split's training set."""
        keep = np.ones(len(train), dtype=bool)
        keep[self.indices] = False
        return train.subset(self.indices), train.subset(np.flatnonzero(keep))

    def test_partition(self, test: ImageDataset) -> tuple[ImageDataset, Optional[ImageDataset]]:
        """(test without the forgotten class/sub-class, test of the forgotten class) for class requests;
        (whole test, None) for random and explicit requests."""
        fines = [self.forgotten_fine] if self.forgotten_fine is not None else self.forgotten_fines
        classes = [self.forgotten_class] if self.forgotten_class is not None else self.forgotten_classes
        if fines:
            gone = np.isin(test.fine_labels.numpy(), fines)
        elif classes:
            gone = np.isin(test.labels.numpy(), classes)
        else:
            return test, None
        return test.subset(np.flatnonzero(~gone)), test.subset(np.flatnonzero(gone))


def _nonempty(indices: np.ndarray, what: str) -> np.ndarray:
    if len(indices) == 0:
        raise MumisError(f"the forget set is empty: {what}. Choose a request that names at least one training sample.")
    return np.sort(indices.astype(np.int64))


def full_class(train: ImageDataset, split: Split, cls: int) -> ForgetSet:
    """Every training sample of class ``cls``."""
    if not 0 <= cls < train.num_classes:
        raise MumisError(f"forget class {cls} is out of range: {split.dataset} has classes 0..{train.num_classes - 1}")
    idx = _nonempty(np.flatnonzero(train.labels.numpy() == cls), f"class {cls} has no training samples")
    return ForgetSet("full_class", {"class": cls}, split.sha256, idx, forgotten_class=cls)


def sub_class(train: ImageDataset, split: Split, fine: int) -> ForgetSet:
    """Every training sample of fine class ``fine`` (the rest of its super-class stays)."""
    if train.fine_labels is None:
        raise MumisError(f"{split.dataset} has no fine labels; sub-class forgetting needs a dataset like cifar20.")
    if not 0 <= fine < len(train.fine_classes):
        raise MumisError(f"fine class {fine} is out of range: {split.dataset} has fine classes 0..{len(train.fine_classes) - 1}")
    idx = _nonempty(np.flatnonzero(train.fine_labels.numpy() == fine), f"fine class {fine} has no training samples")
    return ForgetSet("sub_class", {"fine_class": fine}, split.sha256, idx, forgotten_fine=fine)


def random_fraction(train: ImageDataset, split: Split, fraction: float, seed: int = 0, stratified: bool = True) -> ForgetSet:
    """A random ``fraction`` of the training set; ``stratified`` draws the same fraction from every class."""
    if not 0.0 < fraction < 1.0:
        raise MumisError(f"the forget fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    labels = train.labels.numpy()
    if stratified:
        groups = [np.flatnonzero(labels == c) for c in np.unique(labels)]
        idx = np.concatenate([rng.choice(g, size=round(fraction * len(g)), replace=False) for g in groups])
    else:
        idx = rng.choice(len(labels), size=round(fraction * len(labels)), replace=False)
    idx = _nonempty(idx, f"{fraction:.2%} of {len(labels)} samples rounds to zero")
    return ForgetSet("random", {"fraction": fraction, "seed": seed, "stratified": stratified}, split.sha256, idx)


def most_memorised(train: ImageDataset, split: Split, scores: np.ndarray, fraction: float) -> ForgetSet:
    """The ``fraction`` of every class with the highest memorisation ``scores`` (one per training position, e.g.
    :func:`mumis.metrics.lira.memorisation_scores` from shadow models): a sample request made of the samples a model
    remembers most, the hard case for a per-example attack. Ties are broken by position."""
    if not 0.0 < fraction < 1.0:
        raise MumisError(f"the forget fraction must be in (0, 1), got {fraction}")
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(train),) or not np.isfinite(scores).all():
        raise MumisError(f"memorisation scores must be {len(train)} finite numbers, one per training sample; "
                         f"got shape {scores.shape}")
    labels = train.labels.numpy()
    picked = []
    for c in np.unique(labels):
        group = np.flatnonzero(labels == c)
        order = group[np.lexsort((group, -scores[group]))]  # highest score first, then lowest position
        picked.append(order[: round(fraction * len(group))])
    idx = _nonempty(np.sort(np.concatenate(picked)), f"{fraction:.2%} of each class rounds to zero")
    digest = hashlib.sha256(np.round(scores, 9).tobytes()).hexdigest()
    return ForgetSet("memorised", {"fraction": fraction, "scores_sha256": digest}, split.sha256, idx)


def explicit_ids(split: Split, ids) -> ForgetSet:
    """The training-pool sample ids a user names (e.g. from a deletion request); each must be in the split's train."""
    ids = [int(i) for i in ids]  # Python ints: an id beyond int64 is simply not in the split
    position = {int(v): i for i, v in enumerate(split.train)}
    unknown = [i for i in ids if i not in position]
    if unknown:
        raise MumisError(f"sample ids {unknown[:10]} are not in this split's training set; a model cannot forget data it never saw.")
    idx = _nonempty(np.unique(np.asarray([position[i] for i in ids], dtype=np.int64)), "no ids were given")
    return ForgetSet("ids", {"count": len(idx)}, split.sha256, idx)


def merge_requests(requests: list[ForgetSet]) -> ForgetSet:
    """Everything a sequence of requests on one split has forgotten so far: the union of their samples, and of
    their classes (full-class requests) or fine classes (sub-class requests) for the test partition."""
    if not requests or len({r.split_sha256 for r in requests}) != 1:
        raise MumisError("merge_requests needs at least one forget set, all drawn from the same split")
    if len(requests) == 1:
        return requests[0]
    classes = [r.forgotten_class for r in requests if r.forgotten_class is not None]
    fines = [r.forgotten_fine for r in requests if r.forgotten_fine is not None]
    idx = np.unique(np.concatenate([r.indices for r in requests]))
    return ForgetSet("sequence", {"requests": [{"request": r.request, **r.params} for r in requests]},
                     requests[0].split_sha256, idx, forgotten_classes=classes or None, forgotten_fines=fines or None)


FORGET_REQUESTS = ("full_class", "sub_class", "random")


def build_forget_set(request: str, train: ImageDataset, split: Split, value: float, seed: int = 0) -> ForgetSet:
    """One entry point for the request kinds: ``value`` is the class, the fine class, or the fraction."""
    if request == "full_class":
        return full_class(train, split, int(value))
    if request == "sub_class":
        return sub_class(train, split, int(value))
    if request == "random":
        return random_fraction(train, split, float(value), seed=seed)
    raise MumisError(f"unknown forget request {request!r}; choose one of: {', '.join(FORGET_REQUESTS)}")
