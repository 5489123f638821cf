"""A deletion request end to end, as `mumis forget` serves it: check every input, unlearn, write the new checkpoint
and its audit manifest together (or nothing), and re-verify a manifest later."""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from torch import nn

from mumis.bench.experiment import apply_method, save_unlearned
from mumis.bench.results import git_sha
from mumis.data import (
    ForgetSet,
    ImageDataset,
    TaskData,
    as_surrogate,
    atomic_write_text,
    explicit_ids,
    full_class,
    load_dataset,
    task_from_views,
)
from mumis.errors import MumisError
from mumis.methods import UnlearningMethod, get_method, raise_if_diverged
from mumis.methods.auto import resolve
from mumis.methods.recipes import dataset_family, load_recipe
from mumis.metrics import evaluate, forget_metrics, predict_logits
from mumis.metrics.lira import calibrated_scores, member_like_share, scaled_confidence
from mumis.runtime import cache_root, isolated_global_state, seed_everything, versions
from mumis.serving.audit import (
    MANIFEST_VERSION,
    check_output,
    edited_fields,
    file_sha256,
    forgotten_before,
    heldout_spent,
    ids_sha256,
    load_manifest,
    manifest_path,
    manifest_text,
    now,
    output_files,
    read_ids,
    refuse_pickle,
    request_chain,
    resolve_data,
)
from mumis.training import CheckpointMeta, load_checkpoint, sidecar_path


@dataclass
class DeletionRequest:
    checkpoint: Path
    model: nn.Module
    meta: CheckpointMeta
    data_spec: str
    task: TaskData
    request: dict  # what the request named, with the hashes that identify it
    method: UnlearningMethod
    surrogate: Optional[ImageDataset]
    out: Path
    trace: bool = False  # also write the stop trace (JSON and PNG) beside the checkpoint
    kind: str = "samples"  # "class" or "samples": what the request names
    why: str = ""  # why this method ran (the measured table's line for ``auto``)
    base: Optional["ChainBase"] = None  # run on the chain's first model for every sample forgotten so far


@dataclass
class ChainBase:
    """Where a sample request on a model that earlier sample requests produced actually runs: the chain's first model,
    with the union of every request's samples as D_f. Each output is then one request's removal from a model that
    never forgot anything — the held-out accuracy a request may cost is not paid again and again, and errors do not
    add up (measured in docs/research/requests-in-a-row.md)."""
    checkpoint: Path
    sha256: str
    model: nn.Module
    task: TaskData  # D_f = every sample forgotten so far, this request's included
    earlier: int  # requests before this one


def _one(what: str, **given):
    named = {k: v for k, v in given.items() if v is not None}
    if len(named) != 1:
        raise MumisError(f"give exactly one {what}: {' or '.join('--' + k.replace('_', '-') for k in given)}"
                         + (f" (got {', '.join(named)})" if named else ""))
    return next(iter(named.items()))


def _forget_set(kind: str, value, split, train) -> tuple[ForgetSet, dict]:
    if kind == "ids":
        path = Path(value)
        ids, dropped = read_ids(path)
        fs = explicit_ids(split, ids)
        return fs, {"kind": "ids", "path": str(path.resolve()), "file_sha256": file_sha256(path),
                    "ids_sha256": ids_sha256(ids), "count": len(ids), "duplicates_dropped": dropped}
    if kind == "class":
        fs = full_class(train, split, int(value))
        return fs, {"kind": "class", "class": int(value), "count": len(fs.indices)}
    path = Path(value)
    fs = ForgetSet.load(path)
    fs.check_split(split)
    return fs, {"kind": "forget_file", "path": str(path.resolve()), "file_sha256": file_sha256(path), "count": len(fs.indices)}


def request_kind(ids, forget_class, forget_file) -> str:
    """What the request names: ``class`` (``--class``, or a forget file of whole classes) or ``samples`` (``--ids``,
    or a forget file of random or sub-class samples)."""
    return _request_of(*_one("forget request", ids=ids, **{"class": forget_class}, forget=forget_file))


def _request_of(kind: str, value) -> str:
    if kind in ("forget", "forget_file"):
        fs = ForgetSet.load(Path(value))
        return "class" if fs.forgotten_class is not None or fs.forgotten_classes else "samples"
    return "class" if kind == "class" else "samples"


# what a request served from a split holds: the forget set, the held-out half of the test split, the training-set size
SPLIT_DATA = frozenset({"forget", "heldout", "train_size"})


def resolve_method(method: str, kind: str) -> tuple[str, dict, str]:
    """(method, options, why) for a request served from a split (see :func:`mumis.methods.auto.resolve`)."""
    return dataclasses.astuple(resolve(method, kind, set(SPLIT_DATA)))


def prepare_request(checkpoint, model_path, data, split_file, ids, forget_class, forget_file, out: Path, overwrite: bool,
                    method: str, options: dict, surrogate: Optional[str], surrogate_size: int,
                    data_dir: Optional[Path], trace: bool = False, why: str = "", recipe: Optional[str] = None,
                    ) -> DeletionRequest:
    """Every check that can fail, before any work: names, files, hashes, shapes, classes, every output file.

    ``recipe``: take the method's options from a tuned recipe (methods/recipes) for this request — a class request
    reads the recipe's ``full_class`` entry, a sample request its ``random`` one — and the split's dataset family;
    explicit ``options`` win."""
    _, ckpt = _one("model", checkpoint=checkpoint, model=model_path)
    ckpt = Path(ckpt)
    refuse_pickle(ckpt)
    _, spec = _one("data description", data=data, split=split_file)
    kind, value = _one("forget request", ids=ids, **{"class": forget_class}, forget=forget_file)
    kind = {"forget": "forget_file"}.get(kind, kind)
    check_output(out, [ckpt, sidecar_path(ckpt), Path(spec)] + ([Path(value)] if kind != "class" else []), overwrite,
                 trace)
    request = _request_of(kind, value)
    choice = resolve(method, request, set(SPLIT_DATA), options)
    method, options, why = choice.method, choice.options, why or choice.why
    unlearner = get_method(method, **options)  # unknown method / option: fail before loading anything
    tuned = load_recipe(recipe) if recipe else None
    model, meta = load_checkpoint(ckpt)
    bundle, split = resolve_data(str(spec), data_dir)
    meta.check_split(split)
    if tuned is not None:
        task_kind = "full_class" if request == "class" else "random"
        options = {**tuned.options(method, options, task_kind, split.dataset), **options}
        unlearner = get_method(method, **options)
        why = f"{why}; options from recipe {tuned.name!r} v{tuned.version} ({task_kind} × {dataset_family(split.dataset)})"
    train, test = split.materialise(bundle)
    if (meta.in_channels, meta.num_classes) != (train.in_channels, train.num_classes):
        raise MumisError(f"{ckpt} takes {meta.in_channels}-channel inputs with {meta.num_classes} classes, but "
                         f"{split.dataset} has {train.in_channels} channels and {train.num_classes} classes")
    fs, described = _forget_set(kind, value, split, train)
    if request == "samples":
        described["positions"] = sorted(int(i) for i in fs.indices)
    chain = request_chain(ckpt, split.sha256)
    base = _chain_base(chain, split, train, test, fs) if request == "samples" else None
    if base is not None:
        if {p.resolve() for p in output_files(out, trace)} & {base.checkpoint.resolve(), sidecar_path(base.checkpoint).resolve()}:
            raise MumisError(f"--out {out} would overwrite {base.checkpoint}, the first model of this chain of requests, "
                             "which this request runs on and `mumis verify` needs; write the new model elsewhere")
        why = (f"{why}; served from {base.checkpoint.name}, the model before this chain's {base.earlier} earlier "
               f"request(s), for all {len(base.task.forget)} samples forgotten so far (costs do not add up)")
    elif chain and method == "newton":  # on the model given: what earlier requests removed and cost is accounted for
        spent, removed = heldout_spent(chain), forgotten_before(chain)
        told = {"heldout_spent": spent, "train_size": len(train) - removed}
        options = {**{k: v for k, v in told.items() if k not in options}, **options}
        unlearner = get_method(method, **options)
        why = (f"{why}; {len(chain)} earlier request(s) on this model removed {removed} samples and cost {spent:.2f} "
               "points of held-out accuracy")
    if method == "newton" and "curvature_cache" not in options and (base is not None or not chain):
        # the model it runs on is a chain's first: the next request of the chain reuses its held-out curvature
        options = {**options, "curvature_cache": str(cache_root() / "curvature")}
        unlearner = get_method(method, **options)
    if len((base.task.forget_set if base else fs).indices) >= len(train):
        raise MumisError("the forget set is the whole training set: nothing would be left to keep. Retrain from "
                         "scratch on new data instead of unlearning.")
    task = task_from_views(train, test, split, fs)
    extra = as_surrogate(load_dataset(surrogate, data_dir).train, task.retain, surrogate_size, meta.seed) if surrogate else None
    return DeletionRequest(ckpt, model, meta, str(spec), task, {**described, "forget_sha256": fs.sha256}, unlearner, extra,
                           out, trace, request, why, base)


def _chain_base(chain: list[dict], split, train: ImageDataset, test: ImageDataset, fs: ForgetSet) -> Optional[ChainBase]:
    """The chain's first model and every sample forgotten so far, when the checkpoint came from earlier sample requests
    (``chain``, from :func:`request_chain`) on this split whose manifests record their samples and whose first model is
    still there, unchanged; else None (the request then runs on the checkpoint itself)."""
    if not chain or any(body["method"]["request"] != "samples" or "positions" not in body["request"] for body in chain):
        return None
    root = chain[-1]["input"]
    path = Path(root["path"])
    if path.suffix != ".safetensors" or not path.is_file() or file_sha256(path) != root["sha256"]:
        return None
    model, meta = load_checkpoint(path)
    meta.check_split(split)
    positions = np.unique(np.concatenate([fs.indices] + [np.asarray(b["request"]["positions"], dtype=np.int64)
                                                         for b in chain]))
    union = ForgetSet("sequence", {"requests": len(chain) + 1, "count": len(positions)}, split.sha256, positions)
    return ChainBase(path, root["sha256"], model, task_from_views(train, test, split, union), len(chain))


def _per_sample_evidence(model: nn.Module, task: TaskData) -> dict:
    """Per forget sample, how far it is fitted like training data: its logit-scaled confidence calibrated against the
    test samples a method's held-out rule never reads (the odd half), and the share of D_f above their 95th
    percentile (≈ 5 % for samples the model treats as unseen). The same code runs in ``serve`` and ``verify``."""
    reference = task.test.subset(range(1, len(task.test), 2))
    ref_phi = scaled_confidence(predict_logits(model, reference), reference.labels)
    scores = calibrated_scores(scaled_confidence(predict_logits(model, task.forget), task.forget.labels), ref_phi)
    share = member_like_share(scores, calibrated_scores(ref_phi, ref_phi))
    return {"member_like": round(share, 4), "scores": [round(float(v), 4) for v in scores]}


EVIDENCE_CALIBRATION = ("offline LiRA with a global OUT fit: z = (phi - mean) / std of the logit-scaled confidence over the "
                        "odd half of the test split; member_like = % of D_f above that half's 95th percentile of z")


def serve_request(req: DeletionRequest, trace: Optional[bool] = None) -> dict:
    """Unlearn, then write checkpoint + sidecar + manifest (+ trace) as one unit: on any failure or interrupt
    everything this call created is removed again. The caller's random streams and flags are left as they were."""
    with isolated_global_state():
        return _serve(req, req.trace if trace is None else trace)


def _serve(req: DeletionRequest, trace: bool) -> dict:
    input_sha = file_sha256(req.checkpoint)
    seed_everything(req.meta.seed)
    before = forget_metrics(req.model, req.task)  # what `mumis verify` recomputes, by the same code
    evidence_before = _per_sample_evidence(req.model, req.task)
    base = req.base
    result, data, sw = apply_method(req.method, base.model if base else req.model, base.task if base else req.task,
                                    req.surrogate)
    raise_if_diverged(result, req.method.name, f"nothing was written and {req.checkpoint} is unchanged")
    metrics = evaluate(result.model, req.task)
    after = {"fa": metrics["fa"], "mia": metrics["mia"]}
    evidence_after = _per_sample_evidence(result.model, req.task)
    written = output_files(req.out, trace)
    trace_stem = req.out.with_suffix(".trace") if trace else None
    try:
        save_unlearned(req.out, result, req.method, req.meta, req.task, metrics, sw.seconds, trace_stem=trace_stem,
                       title=f"{req.method.name}: {req.checkpoint.name}")
        body = {
            "mumis_manifest": MANIFEST_VERSION, "created": now(),
            "input": {"path": str(req.checkpoint.resolve()), "sha256": input_sha},
            "data": {"spec": str(Path(req.data_spec).resolve()) if req.data_spec.endswith(".json") else req.data_spec,
                     "dataset": req.task.split.dataset, "split_sha256": req.task.split.sha256},
            "request": req.request,
            "output": {"path": str(req.out.resolve()), "sha256": file_sha256(req.out),
                       "sidecar_sha256": file_sha256(sidecar_path(req.out))},
            "method": {"name": req.method.name, "options": req.method.config_dict(), "data_read": sorted(data.reads),
                       "request": req.kind, "why": req.why,
                       **({"served_from": {"path": str(base.checkpoint.resolve()), "sha256": base.sha256,
                                           "earlier_requests": base.earlier, "forget_count": len(base.task.forget),
                                           "forget_sha256": base.task.forget_set.sha256}} if base else {})},
            "evaluation_read": ["forget", "retain", "test"],  # the metrics below, not the method
            "stop": {"reason": result.stop_reason, "steps": result.steps, "trace": result.trace,
                     "heldout_cost": _heldout_cost(result.info),
                     **{key: result.info[key] for key in ("curvature_from_cache", "atypical_forget_set")
                        if key in result.info}},
            "before": before, "after": after,
            "evidence": {"calibration": EVIDENCE_CALIBRATION, "before": {"member_like": evidence_before["member_like"]},
                         "after": evidence_after},
            "wall_s": sw.seconds, "versions": versions(), "git_sha": git_sha(),
        }
        text = manifest_text(body, _json_default)  # the digest, written last, seals every field above
        atomic_write_text(manifest_path(req.out), text)
    except BaseException:
        for path in written:
            Path(path).unlink(missing_ok=True)
        raise
    return json.loads(text)


def _heldout_cost(info: dict) -> Optional[float]:
    """Points of held-out accuracy the method's own guard measured the request to cost (None: it measures none)."""
    if "heldout_acc_before" in info and "heldout_acc_after" in info:
        return float(info["heldout_acc_before"]) - float(info["heldout_acc_after"])
    return None


def _json_default(value):
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


def verify_manifest(path: Path, data_dir: Optional[Path] = None) -> list[tuple[str, object, object, bool]]:
    """(check, value in the manifest, value now, ok) for the manifest's own digest (an edited field is named), every
    file hash, and what can be recomputed: forget accuracy and MIA of the input model (before) and the output (after).
    A malformed manifest is a MumisError (exit 2), never a failed check."""
    manifest = load_manifest(path)
    edited = edited_fields(manifest)
    checks = [(f"manifest field {name!r}", "as sealed", "edited", False) for name in edited]
    if not edited:
        checks.append(("manifest digest", manifest["digest"]["body_sha256"][:16] + "…", "matches", True))

    def hashed(name, file, expected):
        actual = file_sha256(file) if Path(file).is_file() else "missing"
        checks.append((name, expected[:16] + "…", actual[:16] + "…" if actual != "missing" else actual, actual == expected))

    hashed("input checkpoint SHA-256", manifest["input"]["path"], manifest["input"]["sha256"])
    if "served_from" in manifest["method"]:
        hashed("chain's first checkpoint SHA-256", manifest["method"]["served_from"]["path"],
               manifest["method"]["served_from"]["sha256"])
    request = manifest["request"]
    if "file_sha256" in request:
        hashed("request file SHA-256", request["path"], request["file_sha256"])
    out = Path(manifest["output"]["path"])
    hashed("output checkpoint SHA-256", out, manifest["output"]["sha256"])
    hashed("output sidecar SHA-256", sidecar_path(out), manifest["output"]["sidecar_sha256"])
    if not all(ok for *_, ok in checks):
        return checks  # recomputing metrics on files that do not match would prove nothing
    bundle, split = resolve_data(manifest["data"]["spec"], data_dir)
    checks.append(("split SHA-256", manifest["data"]["split_sha256"][:16] + "…", split.sha256[:16] + "…",
                   split.sha256 == manifest["data"]["split_sha256"]))
    train, test = split.materialise(bundle)
    kind = request["kind"]
    value = request.get("class") if kind == "class" else request["path"]
    fs, _ = _forget_set(kind, value, split, train)
    checks.append(("forget set SHA-256", request["forget_sha256"][:16] + "…", fs.sha256[:16] + "…", fs.sha256 == request["forget_sha256"]))
    if "positions" in request:  # what a later request in the chain reads back as this request's samples
        same = request["positions"] == sorted(int(i) for i in fs.indices)
        checks.append(("forget positions", f"{len(request['positions'])} samples", "match" if same else "differ", same))
    task = task_from_views(train, test, split, fs)
    for when, checkpoint in (("before", manifest["input"]["path"]), ("after", out)):
        model, meta = load_checkpoint(checkpoint)
        meta.check_split(split)
        now_metrics = forget_metrics(model, task)
        for key in ("fa", "mia"):
            expected = manifest[when][key]
            checks.append((f"{key.upper()} {when} (%)", round(expected, 4), round(now_metrics[key], 4),
                           abs(expected - now_metrics[key]) < 1e-6))
        evidence, recorded = _per_sample_evidence(model, task), manifest["evidence"][when]
        checks.append((f"member-like share of D_f {when} (%)", recorded["member_like"], evidence["member_like"],
                       abs(recorded["member_like"] - evidence["member_like"]) < 1e-3))
        if when == "after":
            worst = max((abs(a - b) for a, b in zip(recorded["scores"], evidence["scores"])), default=0.0)
            same = len(recorded["scores"]) == len(evidence["scores"]) and worst < 1e-3
            checks.append(("per-sample scores after", f"{len(recorded['scores'])} samples",
                           f"max |Δ| {worst:.1e}" if same else "differ", same))
    return checks
