"""``newton`` as studied: the all-layer step's construction and scan as switches (docs/research/mumis-variants.md).

The product's ``newton`` runs the settings that measured closest to retrain (:class:`~mumis.methods.newton.ScanSettings`);
``newton_study`` lets ``benchmarks/mumis_variants.py`` rerun the settings it was compared against: the unprojected
step, one projection at the start, no accuracy stop, K-FAC instead of EK-FAC, a finer scan.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from mumis.errors import MumisError
from mumis.methods.newton import Newton, NewtonConfig, ScanSettings
from mumis.methods.registry import register


@dataclass(frozen=True)
class NewtonStudyConfig(NewtonConfig):
    keep_class_losses: bool = True  # project out each class's held-out loss gradient (False: the unprojected step)
    reproject: Optional[bool] = None  # re-project at every scale (None: with keep_class_losses)
    match_accuracy: Optional[bool] = None  # also stop once D_f's accuracy reaches held-out accuracy (None: True)
    curvature: Optional[str] = None  # "kfac" | "ekfac" (None: "ekfac")
    scan_resolution: int = 2  # scales per doubling of the step


@register
class NewtonStudy(Newton):
    """``newton`` with the all-layer step's settings as options; they need ``layers="all"``."""

    name = "newton_study"
    Config = NewtonStudyConfig

    def __init__(self, config: Optional[NewtonStudyConfig] = None, **overrides):
        super().__init__(config, **overrides)
        cfg = self.config
        if cfg.reproject and (cfg.layers != "all" or not cfg.keep_class_losses):
            raise MumisError("newton: reproject=True re-projects the all-layer step that keeps each class's held-out loss; "
                             "it needs layers=all and keep_class_losses=true")
        if cfg.curvature not in (None, "kfac", "ekfac"):
            raise MumisError(f"newton: curvature={cfg.curvature!r} is not one of 'kfac', 'ekfac'")
        if cfg.curvature is not None and cfg.layers != "all":
            raise MumisError(f"newton: curvature={cfg.curvature!r} is the all-layer step's curvature; it needs layers=all "
                             "(the head-only step solves with the exact Hessian)")
        if cfg.scan_resolution < 1:
            raise MumisError(f"newton: scan_resolution={cfg.scan_resolution} must be at least 1 (scales per doubling)")
        if cfg.match_accuracy and cfg.layers != "all":
            raise MumisError("newton: match_accuracy=True is a stop rule of the all-layer scan; it needs layers=all "
                             "(the head-only step takes one step, no scan)")

    @property
    def scan(self) -> ScanSettings:
        cfg = self.config
        reproject = cfg.reproject if cfg.reproject is not None else (cfg.layers == "all" and cfg.keep_class_losses)
        return ScanSettings(keep_class_losses=cfg.keep_class_losses, reproject=reproject,
                            match_accuracy=True if cfg.match_accuracy is None else cfg.match_accuracy,
                            curvature=cfg.curvature or "ekfac", resolution=cfg.scan_resolution)
