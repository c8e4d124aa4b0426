#!/usr/bin/python3
"""tests/tools/check_models.py - tools/clgrad_torch.py against tools/models.c's catalogue: the
same model names, each with the same default optimizer and rate, input shape, classes, and
exactly the same state_dict names (in order) and shapes. The catalogue comes from
`clgrad-train --list-models --json`. Usage: check_models.py CLGRAD_TRAIN CLGRAD_TORCH_PY
"""
import importlib.util
import json
import subprocess
import sys

SKIP = 77  # meson's exit code for a skipped test


def main(train, torch_py):
    try:
        import torch  # noqa: F401
    except ImportError:
        print("SKIP: /usr/bin/python3 has no torch, so tools/clgrad_torch.py cannot be checked")
        return SKIP
    spec = importlib.util.spec_from_file_location("clgrad_torch", torch_py)
    ct = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ct)
    out = subprocess.run([train, "--list-models", "--json"], check=True, capture_output=True, text=True)
    catalogue = json.loads(out.stdout)["models"]

    errors = []
    c_names = [m["name"] for m in catalogue]
    if sorted(c_names) != sorted(ct.MODELS):
        errors.append(f"models: clgrad-train has {c_names}, clgrad_torch.py has {list(ct.MODELS)}")
    for m in catalogue:
        name = m["name"]
        cls = ct.MODELS.get(name)
        if cls is None:
            continue
        want = (m["optimizer"], m["lr"], tuple(m["input"]), m["classes"])
        got = (cls.optimizer, cls.lr, tuple(cls.input_shape), cls.classes)
        if want != got:
            errors.append(f"{name}: (optimizer, lr, input, classes) {want} in models.c, {got} in torch")
        c_state = [(e["name"], e["shape"]) for e in m["state"]]
        model = cls()
        # clgrad keeps num_batches_tracked as an F32 [1] tensor, torch as an int64 scalar
        t_state = [(k, list(v.shape) or [1]) for k, v in model.state_dict().items()]
        if c_state != t_state:
            errors.append(f"{name}: state differs\n  clgrad: {c_state}\n  torch:  {t_state}")
        model.eval()
        with torch.no_grad():
            y = model(torch.zeros(2, *cls.input_shape))
        if list(y.shape) != [2, cls.classes]:
            errors.append(f"{name}: torch output {list(y.shape)} for 2 images, want [2, {cls.classes}]")
        print(f"{name}: {len(c_state)} state entries checked")
    for e in errors:
        print("FAIL " + e)
    return 1 if errors else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
