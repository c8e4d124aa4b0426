#!/usr/bin/python3
"""clgrad's training models (tools/models.c's catalogue) in PyTorch, with clgrad's state_dict names, to
cross-check checkpoints both ways: `eval` scores a clgrad checkpoint with torch, `train`
trains in torch and writes a checkpoint clgrad can load. Pair: tools/clgrad-train (C);
speed baseline: tools/torch_baseline.py. Needs torch and numpy, no safetensors package.
"""
import argparse
import gzip
import json
import os
import struct
import sys
import time
import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"
_DT = {"F32": "<f4", "F64": "<f8", "I64": "<i8", "I32": "<i4"}


# ---- safetensors, by hand: u64 LE header length, JSON header, raw data --------------------
def read_safetensors(path):
    """Returns {name: numpy array}; rejects offsets outside the file."""
    with open(path, "rb") as f:
        buf = f.read()
    if len(buf) < 8:
        raise ValueError(f"{path}: too short for a safetensors file")
    (n,) = struct.unpack("<Q", buf[:8])
    if 8 + n > len(buf):
        raise ValueError(f"{path}: header length {n} past the end of the file")
    header = json.loads(buf[8:8 + n])
    data = memoryview(buf)[8 + n:]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        if e["dtype"] not in _DT:
            raise ValueError(f"{path}: {name}: unsupported dtype {e['dtype']}")
        b, end = e["data_offsets"]
        dt = np.dtype(_DT[e["dtype"]])
        count = int(np.prod(e["shape"], dtype=np.int64))
        if not (0 <= b <= end <= len(data)) or end - b != count * dt.itemsize:
            raise ValueError(f"{path}: {name}: bad data_offsets {b}..{end}")
        out[name] = np.frombuffer(data[b:end], dtype=dt).reshape(e["shape"]).copy()
    return out


def write_safetensors(path, arrays):
    """arrays: {name: numpy array}, written in order, F32/F64 kept as they are."""
    header, blobs, off = {}, [], 0
    rev = {v: k for k, v in _DT.items()}
    for name, a in arrays.items():
        a = np.ascontiguousarray(a)
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        b = a.tobytes()
        header[name] = {"dtype": rev[a.dtype.str], "shape": list(a.shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)  # never a half-written checkpoint under the real name


# ---- the models ----------------------------------------------------------------------------
# The same catalogue as tools/models.c: each class carries the entry's defaults and shapes,
# and tests/tools/check_models.py fails when the two differ (names, state, defaults).
# A training recipe: what clgrad-train does by default for the model (tools/models.c's recipe).
PLAIN = dict(batch=64, nesterov=False, weight_decay=0.0, schedule="none", warmup_epochs=0.0,
             warmup_start_factor=1.0, crop_padding=0, hflip=False, normalize=False)
RESNET_RECIPE = dict(batch=128, nesterov=True, weight_decay=5e-4, schedule="cosine", warmup_epochs=0.5,
                     warmup_start_factor=0.01, crop_padding=2, hflip=True, normalize=True)


class LeNet(nn.Module):
    optimizer, lr, input_shape, classes = "sgd", 0.01, (1, 28, 28), 10
    recipe = PLAIN

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):  # (N, 1, 28, 28)
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # (N, 6, 14, 14)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # (N, 16, 5, 5)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class CNN(nn.Module):
    optimizer, lr, input_shape, classes = "adam", 0.001, (1, 28, 28), 10
    recipe = PLAIN

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(64)
        self.fc1 = nn.Linear(3136, 128)
        self.dropout = nn.Dropout(0.25)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):  # (N, 1, 28, 28)
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)  # (N, 32, 14, 14)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)  # (N, 64, 7, 7)
        x = torch.flatten(x, 1)
        x = self.dropout(F.relu(self.fc1(x)))
        return self.fc2(x)


class BasicBlock(nn.Module):
    """torchvision's BasicBlock (expansion 1) with its state names."""

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNetSmall(nn.Module):
    """clg_resnet_small_create: stem conv3x3-16 + BN + ReLU, stages of BasicBlocks at 16/32/64
    channels (stride 2 at stages 2-3), global average pool, linear; torchvision's init
    (kaiming_normal_ fan_out relu for convs, BN 1/0)."""

    def __init__(self, in_channels=3, blocks=(1, 1, 1), classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        inplanes = 16
        for i, (planes, stride) in enumerate([(16, 1), (32, 2), (64, 2)]):
            layers = []
            for b in range(blocks[i]):
                layers.append(BasicBlock(inplanes, planes, stride if b == 0 else 1))
                inplanes = planes
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(64, classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class ResNet(ResNetSmall):
    optimizer, lr, input_shape, classes = "sgd", 0.1, (1, 28, 28), 10
    recipe = RESNET_RECIPE

    def __init__(self, blocks=1):
        super().__init__(in_channels=1, blocks=(blocks, blocks, blocks), classes=10)


MODELS = {"lenet": LeNet, "cnn": CNN, "resnet": ResNet}


SGD_MOMENTUM = 0.9  # tools/models.h MODEL_SGD_MOMENTUM


def make_optimizer(name, params):
    """The model's default optimizer and rate, as clgrad-train trains it: SGD with momentum
    (nesterov and weight decay on weights only, biases and norm parameters without, when the
    recipe says so) or Adam."""
    m = MODELS[name]
    r = m.recipe
    params = list(params)
    if r["weight_decay"] > 0:
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": r["weight_decay"]},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    else:
        groups = params
    if m.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=m.lr, momentum=SGD_MOMENTUM, nesterov=r["nesterov"])
    return torch.optim.Adam(groups, lr=m.lr)


def make_scheduler(name, opt, steps_per_epoch, epochs):
    """Linear warm-up over warmup_epochs, then cosine to 0 over the rest (clgrad's
    CLG_LR_COSINE with warmup_steps); None for a constant rate. Stepped after every batch."""
    r = MODELS[name].recipe
    if r["schedule"] == "none":
        return None
    total = steps_per_epoch * epochs
    warm = int(round(r["warmup_epochs"] * steps_per_epoch))
    cos = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total - warm))
    if warm == 0:
        return cos
    lin = torch.optim.lr_scheduler.LinearLR(opt, start_factor=r["warmup_start_factor"], total_iters=warm)
    # SequentialLR steps its schedules with an epoch argument, which torch 1.13 warns about
    warnings.filterwarnings("ignore", message="The epoch parameter", category=UserWarning)
    return torch.optim.lr_scheduler.SequentialLR(opt, [lin, cos], milestones=[warm])


def augment(xb, pad, hflip, gen):
    """torchvision's RandomCrop(28, padding=pad) and RandomHorizontalFlip per image, on [0, 1]
    images before normalisation (the padding is black, as PIL pads)."""
    n, _, h, w = xb.shape
    if pad > 0:
        padded = F.pad(xb, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
        xb = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])
    if hflip:
        flip = torch.rand(n, generator=gen) < 0.5
        xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
    return xb


# ---- checkpoints ---------------------------------------------------------------------------
def load_checkpoint(model, path):
    arrays = read_safetensors(path)
    sd = model.state_dict()
    missing = [k for k in sd if k not in arrays]
    extra = [k for k in arrays if k not in sd]
    if missing or extra:
        raise ValueError(f"{path}: names differ from the model: missing {missing}, extra {extra}")
    new = {}
    for k, ref in sd.items():
        a = arrays[k]
        if k.endswith("num_batches_tracked"):
            # clgrad keeps it as an F32 [1] tensor; torch wants an int64 scalar.
            if a.size != 1:
                raise ValueError(f"{path}: {k}: {a.size} values, want 1")
            new[k] = torch.tensor(int(round(float(a.reshape(-1)[0]))), dtype=torch.int64)
            continue
        if tuple(a.shape) != tuple(ref.shape):
            raise ValueError(f"{path}: {k}: shape {list(a.shape)}, model has {list(ref.shape)}")
        new[k] = torch.from_numpy(a.astype(np.float32))
    model.load_state_dict(new)


def save_checkpoint(model, path):
    arrays = {}
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked"):
            arrays[k] = np.array([float(v.item())], dtype=np.float32)  # clgrad: F32 [1]
        else:
            arrays[k] = v.detach().cpu().numpy().astype(np.float32)
    write_safetensors(path, arrays)


# ---- Fashion-MNIST (gzipped IDX) -------------------------------------------------------------
def read_idx(path):
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: {data.size} bytes of data, dims {dims}")
    return data.reshape(dims)


def load_split(data_dir, split):
    prefix = "train" if split == "train" else "t10k"
    x = read_idx(os.path.join(data_dir, f"{prefix}-images-idx3-ubyte.gz"))
    y = read_idx(os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte.gz"))
    x = torch.from_numpy(x.astype(np.float32) / 255.0).unsqueeze(1)  # (N, 1, 28, 28) in [0, 1]
    return x, torch.from_numpy(y.astype(np.int64))


def accuracy(model, x, y, batch=1000):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            correct += (model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item()
    return correct / len(x)


# ---- subcommands -----------------------------------------------------------------------------
def cmd_eval(args):
    model = MODELS[args.model]()
    load_checkpoint(model, args.checkpoint)
    x, y = load_split(args.data, "test")
    print(f"test_accuracy={accuracy(model, x, y):.4f}")
    return 0


def cmd_train(args):
    torch.manual_seed(args.seed)
    cls = MODELS[args.model]
    r = cls.recipe
    batch = args.batch or r["batch"]
    model = cls()
    opt = make_optimizer(args.model, model.parameters())
    xtr, ytr = load_split(args.data, "train")
    if args.limit:
        xtr, ytr = xtr[:args.limit], ytr[:args.limit]
    xte, yte = load_split(args.data, "test")
    mean, std = (xtr.mean().item(), xtr.std().item()) if r["normalize"] else (0.0, 1.0)
    steps_per_epoch = (len(xtr) + batch - 1) // batch
    sched = make_scheduler(args.model, opt, steps_per_epoch, args.epochs)
    gen = torch.Generator().manual_seed(args.seed)
    print(f"model {args.model}, batch {batch}, recipe {r}, label smoothing {args.label_smoothing}, "
          f"mean {mean:.4f} std {std:.4f}", flush=True)
    for epoch in range(1, args.epochs + 1):
        model.train()
        perm = torch.randperm(len(xtr), generator=gen)
        total_loss, seen = 0.0, 0
        t0 = time.perf_counter()
        for i in range(0, len(xtr), batch):
            idx = perm[i:i + batch]
            xb, yb = augment(xtr[idx], r["crop_padding"], r["hflip"], gen), ytr[idx]
            opt.zero_grad()
            loss = F.cross_entropy(model((xb - mean) / std), yb, label_smoothing=args.label_smoothing)
            loss.backward()
            opt.step()
            if sched:
                sched.step()
            total_loss += loss.item() * len(idx)
            seen += len(idx)
        dt = time.perf_counter() - t0
        acc = accuracy(model, (xte - mean) / std, yte)
        print(f"epoch {epoch}: train_loss={total_loss / seen:.4f} test_accuracy={acc:.4f} "
              f"images_per_s={seen / dt:.1f} time_s={dt:.1f}", flush=True)
    if args.save:
        save_checkpoint(model, args.save)
        print(f"saved {args.save}")
    return 0


def main(argv=None):
    torch.set_num_threads(2)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("eval", help="test accuracy of a clgrad checkpoint, computed by torch")
    e.add_argument("--model", choices=MODELS, required=True)
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--data", default=DEFAULT_DATA)
    t = sub.add_parser("train", help="train in torch, save a checkpoint clgrad can load")
    t.add_argument("--model", choices=MODELS, required=True)
    t.add_argument("--epochs", type=int, default=1)
    t.add_argument("--save")
    t.add_argument("--limit", type=int, default=0, help="use only the first N training images")
    t.add_argument("--batch", type=int, default=0, help="default: the model's recipe (64; resnet 128)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--label-smoothing", type=float, default=0.0,
                   help="training loss only, as clgrad-train --label-smoothing")
    t.add_argument("--data", default=DEFAULT_DATA)
    args = ap.parse_args(argv)
    try:
        return cmd_eval(args) if args.cmd == "eval" else cmd_train(args)
    except (OSError, ValueError) as err:
        print(f"clgrad_torch: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
