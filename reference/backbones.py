"""Pretrained networks a lab is given, with nothing downloaded at grading time: Lab 1's transfer backbone and the
distillation lab's teacher.

Each is a named recipe of `BACKBONES` (`pretrain_digits_backbone`, `dlgrade backbone --out FILE`): a reference model
trained with reference/train.py on a digits32 dataset, fixed seed and epochs. `digits32_resnet18` (the offline
default): the course's reference configuration (ResNet18, width 0.25, one block per stage) on digits32 classes 0-4;
Lab 1 transfers it to classes 5-9. `digits32_teacher`: the same network on all ten digits, the teacher that
lab_distillation's small student learns from. The file holds the state dict and how it was made (name, model,
kwargs, dataset, seed, epochs, accuracy), and loads with `torch.load(..., weights_only=True)`.

The real path (`torchvision_backbone`): torchvision's ResNet18 with ImageNet weights from a local file — the file
torchvision would download, placed by hand (or already in torch's cache); a missing file is an error that names it.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from harness.errors import BadInput

TORCHVISION_RESNET18_FILE = "resnet18-f37072fd.pth"  # torchvision.models.ResNet18_Weights.IMAGENET1K_V1
TORCHVISION_RESNET18_URL = f"https://download.pytorch.org/models/{TORCHVISION_RESNET18_FILE}"


# The names an assignment's [backbone] can use, and how each is made.
BACKBONES = {
    "digits32_resnet18": {"model": "resnet18", "kwargs": {"width": 0.25, "blocks": (1, 1, 1, 1)},
                          "dataset": "digits32_0to4", "seed": 0, "epochs": 8},
    "digits32_teacher": {"model": "resnet18", "kwargs": {"width": 0.25, "blocks": (1, 1, 1, 1)},
                         "dataset": "digits32", "seed": 0, "epochs": 10},
}
DIGITS_BACKBONE = BACKBONES["digits32_resnet18"]  # the offline default
# Pretrained with this many CPU threads on every machine: the order of float reductions depends on the thread count, so
# only a fixed count gives every runner the same weights, and so the same transfer accuracies (2 threads gave other
# weights, and accuracies 0.01-0.06 off those of 1 thread on the same seeds).
PRETRAIN_THREADS = 1


class BackboneError(BadInput):
    """A backbone file that is missing or is not what it claims; the message says what to place where."""


def recipe_of(name: str) -> dict:
    if name not in BACKBONES:
        raise BackboneError(f"unknown backbone '{name}': use one of {', '.join(BACKBONES)}")
    return BACKBONES[name]


def ensure_backbone(name: str) -> Path:
    """The cached file of backbone `name`, pretrained on first use ($DLGRADE_CACHE/backbones, keyed by the reference
    recipe's hash and by the backbone's own recipe: editing reference/train.py, the models or BACKBONES[name] makes
    a new one). Written atomically."""
    import hashlib
    import json
    import os

    from harness.cache import cache_root, recipe_hash

    own = hashlib.sha256(json.dumps(recipe_of(name), sort_keys=True).encode()).hexdigest()[:8]
    path = cache_root() / "backbones" / f"{name}-{recipe_hash()[:12]}-{own}-t{PRETRAIN_THREADS}.pt"
    if not path.is_file():
        partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        pretrain_digits_backbone(partial, name=name)
        partial.replace(path)
    return path


def pretrain_digits_backbone(out: str | Path, epochs: int | None = None, seed: int | None = None,
                             device: str | None = None, name: str = "digits32_resnet18") -> dict:
    """Train backbone `name` (its recipe's epochs and seed unless given) and save it to `out`; returns its metadata
    (accuracy included)."""
    from harness.data import DATASETS, load_test, normalize, raw_split
    from reference.models import build
    from reference.train import pick_device, train

    recipe = recipe_of(name)
    epochs = recipe["epochs"] if epochs is None else epochs
    seed = recipe["seed"] if seed is None else seed
    dataset = recipe["dataset"]
    x_train, y_train = raw_split(dataset, "train")
    x_val, y_val = raw_split(dataset, "val")
    torch.manual_seed(seed)
    model = build(recipe["model"], num_classes=DATASETS[dataset].num_classes, **recipe["kwargs"])
    threads = torch.get_num_threads()
    torch.set_num_threads(PRETRAIN_THREADS)
    try:
        report = train(model, normalize(x_train, dataset), y_train, normalize(x_val, dataset), y_val,
                       device=pick_device(device), flip=DATASETS[dataset].flip, seed=seed, epochs=epochs)
    finally:
        torch.set_num_threads(threads)
    model.to("cpu", memory_format=torch.contiguous_format).eval()
    x_test, y_test = load_test(dataset)
    with torch.no_grad():
        test_accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    meta = {"name": name, "model": recipe["model"], "kwargs": recipe["kwargs"], "dataset": dataset,
            "num_classes": DATASETS[dataset].num_classes, "seed": seed, "epochs": epochs,
            "val_accuracy": round(report.val_accuracy[-1], 6), "test_accuracy": round(test_accuracy, 6),
            "train_time_s": round(report.train_time_s, 3), "torch": str(torch.__version__)}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({**meta, "state_dict": {k: v.contiguous() for k, v in model.state_dict().items()}}, out)
    return meta


def load_digits_backbone(path: str | Path) -> tuple[nn.Module, dict]:
    """(the pretrained model with its 0-4 head, its metadata) from a file written by pretrain_digits_backbone."""
    from reference.models import build

    path = Path(path)
    if not path.is_file():
        raise BackboneError(f"no backbone at {path}: create it with `dlgrade backbone --out {path}` (about a "
                            "minute on a CPU, no download)")
    blob = torch.load(path, weights_only=True, map_location="cpu")
    known_models = {recipe["model"] for recipe in BACKBONES.values()}
    if not isinstance(blob, dict) or "state_dict" not in blob or blob.get("model") not in known_models:
        raise BackboneError(f"{path} is not a backbone written by `dlgrade backbone`")
    model = build(blob["model"], num_classes=blob["num_classes"], **blob["kwargs"])
    model.load_state_dict(blob["state_dict"])
    return model.eval(), {k: v for k, v in blob.items() if k != "state_dict"}


def notebook_backbone(data_dir: str | Path, name: str = "digits32_resnet18") -> tuple[nn.Module, dict]:
    """What a lab notebook loads: `data_dir/backbone.pt`, put there by the grader (the assignment's [backbone]
    `name`). In plain Jupyter a missing file is made on first use (seconds to a few minutes on a CPU); under the
    grader it is an error."""
    import os

    path = Path(data_dir) / "backbone.pt"
    if not path.is_file() and "DLGRADE_OUTPUT_DIR" not in os.environ:
        print(f"pretraining {name} into {path} (first use only)")
        pretrain_digits_backbone(path, name=name)
    model, meta = load_digits_backbone(path)
    if meta.get("name", "digits32_resnet18") != name:  # files from before recipes had names hold the default
        raise BackboneError(f"{path} holds the backbone {meta.get('name', 'digits32_resnet18')}, not {name}: delete "
                            "it or use another data_dir")
    return model, meta


def torchvision_backbone(weights_file: str | Path | None = None) -> nn.Module:
    """torchvision's ResNet18 with ImageNet weights from `weights_file`, or from torch's cache when omitted.
    Never downloads: a missing file raises BackboneError naming the file, where it goes, and where to get it."""
    import torchvision

    path = Path(weights_file) if weights_file else Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_RESNET18_FILE
    if not path.is_file():
        raise BackboneError(f"ResNet18 ImageNet weights not found at {path}: on a machine with internet download "
                            f"{TORCHVISION_RESNET18_URL} and place it there (torch's cache: "
                            f"{Path(torch.hub.get_dir()) / 'checkpoints'}), or pass its path as the weights file")
    model = torchvision.models.resnet18(weights=None)
    try:
        model.load_state_dict(torch.load(path, weights_only=True, map_location="cpu"))
    except (RuntimeError, KeyError, TypeError) as exc:
        raise BackboneError(f"{path} is not torchvision's ResNet18 state dict: {str(exc).splitlines()[0]}") from None
    return model
