"""The assets step, above the grading pipeline: what grading one assignment on this runner needs besides the notebook,
resolved once per command (`check`, `grade`, `calibrate`, `audit`, `demo`, `make gpu-check`) before any student runs.

- the reference solution's times on this runner for the grading parameters (harness/calibrate.py: cached per device,
  torch version, kernel threads, GPU sharing and recipe; the reference is run now when the cache has none);
- the pretrained backbone file of a `[backbone]` assignment (reference/backbones.py: cached, pretrained now when
  missing).

`grade_one` only consumes them (`harness.grade.Assets`): the pipeline never calls itself, and no student's run waits
for a calibration or a pretraining in the middle of its grading.
"""
from __future__ import annotations

from harness.calibrate import CalibrationError, reference_times
from harness.devices import gpu_sharing, pick_device
from harness.grade import Assets, NotGraded, device_name, grading_parameters, torch_version
from harness.spec import AssignmentSpec


def prepare_assignment(spec: AssignmentSpec, overrides: dict | None = None, selfcheck: bool = False, *,
                       timed: bool = True, data_source: str | None = None, threads: int | None = None,
                       runs_per_gpu: int | None = None) -> Assets:
    """Assets for grading `spec` with these parameter `overrides` (and `--selfcheck`) on this runner, as `grade_one`
    will see it (same device, same GPU sharing). `timed=False`: no reference times (the audit compares each run with
    the reference's own run instead). Overrides that grade_one refuses give assets without times: the run is then
    recorded as invalid by grade_one, with its reason."""
    from reference.backbones import ensure_backbone

    backbone = ensure_backbone(spec.backbone) if spec.backbone else None
    if not timed or spec.reference_notebook is None:
        return Assets(backbone=backbone)
    try:
        parameters = grading_parameters(spec, overrides or {}, selfcheck)
    except NotGraded:
        return Assets(backbone=backbone)
    device = pick_device()
    sharing = gpu_sharing(device, runs_per_gpu)
    try:
        times = reference_times(spec, parameters, device_name(device), torch_version(), spec.limits.threads,
                                data_source, sharing, threads)
    except CalibrationError as exc:
        return Assets(timing_problem=str(exc), backbone=backbone)
    return Assets(reference_times=times, backbone=backbone)
