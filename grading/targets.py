"""`dlgrade profile` targets: reference:NAME[,k=v...] | model.pt2 | file.py:factory."""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

from harness.errors import UsageError


def parse_reference(spec: str) -> tuple[str, dict]:
    """'resnet18,width=0.5,blocks=(1,1,1,1)' -> ('resnet18', {'width': 0.5, 'blocks': (1, 1, 1, 1)})."""
    name, _, rest = spec.partition(",")
    try:
        call = ast.parse(f"f({rest})", mode="eval").body
        kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
    except (SyntaxError, ValueError):
        raise UsageError(f"cannot read the options '{rest}': write them as k=v,k=v with Python literals") from None
    if call.args:
        raise UsageError(f"options must be k=v, got '{rest}'")
    return name.strip(), kwargs


def load_factory(target: str):
    path, _, factory = target.rpartition(":")
    module_spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    if module_spec is None or not Path(path).is_file():
        raise UsageError(f"{path} not found")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, factory):
        raise UsageError(f"{path} has no function '{factory}'")
    return getattr(module, factory)()


def profile_target(target: str, input_shape: tuple[int, ...] | None) -> dict:
    from harness.measure import profile_file, profile_module

    if target.startswith("reference:"):
        from reference.models import REGISTRY, build

        name, kwargs = parse_reference(target.removeprefix("reference:"))
        try:
            model = build(name, **kwargs)
        except ValueError as exc:  # reference.models says which name or option is wrong (only that call is caught)
            raise UsageError(str(exc)) from None
        return profile_module(model, input_shape or REGISTRY[name].input_shape)
    if target.endswith(".pt2"):
        if not Path(target).is_file():
            raise UsageError(f"{target} not found")
        return profile_file(target, input_shape)
    if ".py:" in target:
        return profile_module(load_factory(target), input_shape or (3, 32, 32))
    raise UsageError(f"unknown target '{target}': use reference:NAME[,k=v...], a .pt2 file or file.py:factory")
