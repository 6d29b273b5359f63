"""airbench94 itself, on this machine's CPU and data: the yardstick for configs/cifar10_fast.yaml.

A CPU port of KellerJordan/cifar10-airbench legacy/airbench94.py (94.0% in 3.8 s on an A100 with the
original CIFAR-10). Same hyperparameters, net (whitening stem, Dirac convolutions, BatchNorm with
frozen scales), Nesterov SGD with BatchNorm biases at 64x the learning rate, Lookahead with a cubic
ramp, alternating flip, 2 px reflect translate, label smoothing and TTA levels 0/1/2. Changed for
the CPU only: bfloat16 instead of float16 (--bf16), torch's CPU threads, the data read from a
one-folder-per-class JPEG tree (../shared/data's CIFAR-10) instead of torchvision's download.

Needs PyTorch (CPU) and Pillow, which cnntrain does not install:

    pip install torch --index-url https://download.pytorch.org/whl/cpu
    tar xzf ../shared/data/cifar10-jpeg.tar.gz -C /tmp
    python benchmarks/reference/airbench94_torch.py --data-dir /tmp/cifar10-jpeg --bf16 [--epochs 9.9]

Prints the test accuracy after every epoch (TTA level 0, the weights as trained, before the last
Lookahead step) with the wall seconds since training began, those test predictions left out of the
clock, then all three TTA levels of the final weights: what benchmarks/time_to_accuracy.py --airbench
reads.
"""
import argparse
import os
import time
from math import ceil

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

HYP = {
    "batch_size": 1024,
    "lr": 11.5,                 # per 1024 examples, divided by the momentum-scaled kilostep below
    "momentum": 0.85,
    "weight_decay": 0.0153,     # per 1024 examples, same scaling
    "bias_scaler": 64.0,        # BatchNorm biases learn 64x faster
    "label_smoothing": 0.2,
    "whiten_bias_epochs": 3,    # the whitening stem's bias trains for this many epochs, then freezes
    "widths": (64, 256, 256),
    "batchnorm_momentum": 0.6,  # airbench's convention: 1 - torch's momentum
    "scaling_factor": 1 / 9,    # logits scale
}
MEAN = torch.tensor((0.4914, 0.4822, 0.4465)).view(1, 3, 1, 1)
STD = torch.tensor((0.2470, 0.2435, 0.2616)).view(1, 3, 1, 1)


def load_split(root, split, limit=None):
    """The split's images, standardized; with `limit`, the first limit / classes of each class."""
    classes = sorted(os.listdir(os.path.join(root, split)))
    images, labels = [], []
    for label, name in enumerate(classes):
        folder = os.path.join(root, split, name)
        for file in sorted(os.listdir(folder))[:limit and -(-limit // len(classes))]:
            images.append(np.asarray(Image.open(os.path.join(folder, file)).convert("RGB")))
            labels.append(label)
    x = (torch.tensor(np.stack(images)).float() / 255).permute(0, 3, 1, 2)
    return (x - MEAN) / STD, torch.tensor(labels)


def batch_flip_lr(x):
    mask = (torch.rand(len(x)) < 0.5).view(-1, 1, 1, 1)
    return torch.where(mask, x.flip(-1), x)


def batch_crop(images, crop):
    r = (images.size(-1) - crop) // 2
    shifts = torch.randint(-r, r + 1, size=(len(images), 2))
    out = torch.empty((len(images), 3, crop, crop), dtype=images.dtype)
    for sy in range(-r, r + 1):
        for sx in range(-r, r + 1):
            mask = (shifts[:, 0] == sy) & (shifts[:, 1] == sx)
            out[mask] = images[mask, :, r + sy:r + sy + crop, r + sx:r + sx + crop]
    return out


class Batches:
    """airbench's loader: one random flip drawn once, mirrored every other epoch; a fresh 2 px crop each epoch."""

    def __init__(self, x, y, batch_size, dtype):
        self.y, self.batch_size, self.dtype, self.epoch = y, batch_size, dtype, 0
        self.padded = F.pad(batch_flip_lr(x), (2,) * 4, "reflect")

    def __len__(self):
        return len(self.y) // self.batch_size

    def __iter__(self):
        images = batch_crop(self.padded, 32)
        if self.epoch % 2 == 1:
            images = images.flip(-1)
        self.epoch += 1
        order = torch.randperm(len(images))
        for i in range(len(self)):
            j = order[i * self.batch_size:(i + 1) * self.batch_size]
            yield images[j].to(self.dtype).contiguous(memory_format=torch.channels_last), self.y[j]


class Mul(nn.Module):
    def __init__(self, k):
        super().__init__()
        self.k = k

    def forward(self, x):
        return x * self.k


class BatchNorm(nn.BatchNorm2d):
    def __init__(self, n, momentum, eps=1e-12):
        super().__init__(n, eps=eps, momentum=1 - momentum)
        self.weight.requires_grad = False

    def forward(self, x):      # statistics in float32 whatever the compute dtype
        return super().forward(x.float()).to(x.dtype)


class Conv(nn.Conv2d):
    def __init__(self, cin, cout, k=3, padding="same", bias=False):
        super().__init__(cin, cout, kernel_size=k, padding=padding, bias=bias)

    def reset_parameters(self):
        super().reset_parameters()
        if self.bias is not None:
            self.bias.data.zero_()
        w = self.weight.data
        torch.nn.init.dirac_(w[:w.size(1)])


class ConvGroup(nn.Module):
    def __init__(self, cin, cout, momentum):
        super().__init__()
        self.conv1, self.pool, self.norm1 = Conv(cin, cout), nn.MaxPool2d(2), BatchNorm(cout, momentum)
        self.conv2, self.norm2, self.activ = Conv(cout, cout), BatchNorm(cout, momentum), nn.GELU()

    def forward(self, x):
        return self.activ(self.norm2(self.conv2(self.activ(self.norm1(self.pool(self.conv1(x)))))))


def make_net(dtype):
    w1, w2, w3 = HYP["widths"]
    m = HYP["batchnorm_momentum"]
    net = nn.Sequential(Conv(3, 24, 2, padding=0, bias=True), nn.GELU(), ConvGroup(24, w1, m),
                        ConvGroup(w1, w2, m), ConvGroup(w2, w3, m), nn.MaxPool2d(3), nn.Flatten(),
                        nn.Linear(w3, 10, bias=False), Mul(HYP["scaling_factor"]))
    net[0].weight.requires_grad = False
    net = net.to(dtype).to(memory_format=torch.channels_last)
    for module in net.modules():
        if isinstance(module, BatchNorm):
            module.float()
    return net


def init_whitening_conv(layer, x, eps=5e-4):
    c, (h, w) = x.shape[1], layer.weight.shape[2:]
    patches = x.unfold(2, h, 1).unfold(3, w, 1).transpose(1, 3).reshape(-1, c, h, w).float().view(-1, c * h * w)
    eigenvalues, eigenvectors = torch.linalg.eigh(patches.T @ patches / len(patches), UPLO="U")
    eigenvalues = eigenvalues.flip(0).view(-1, 1, 1, 1)
    eigenvectors = eigenvectors.T.reshape(c * h * w, c, h, w).flip(0)
    scaled = eigenvectors / torch.sqrt(eigenvalues + eps)
    layer.weight.data[:] = torch.cat((scaled, -scaled)).to(layer.weight.dtype)


class Lookahead:
    def __init__(self, net):
        self.ema = {k: v.clone() for k, v in net.state_dict().items()}

    def update(self, net, decay):
        for ema, p in zip(self.ema.values(), net.state_dict().values()):
            if p.is_floating_point():
                ema.lerp_(p, 1 - decay)
                p.copy_(ema)


def infer(model, x, level, dtype):
    def mirror(i):
        return 0.5 * model(i) + 0.5 * model(i.flip(-1))

    def mirror_translate(i):
        padded = F.pad(i, (1,) * 4, "reflect")
        shifted = torch.stack([mirror(padded[:, :, 0:32, 0:32]), mirror(padded[:, :, 2:34, 2:34])]).mean(0)
        return 0.5 * mirror(i) + 0.5 * shifted

    view = [model, mirror, mirror_translate][level]
    model.eval()
    with torch.no_grad():
        return torch.cat([view(b.to(dtype).contiguous(memory_format=torch.channels_last)).float()
                          for b in x.split(2000)])


def accuracy(model, x, y, level, dtype):
    return (infer(model, x, level, dtype).argmax(1) == y).float().mean().item()


def make_training(x_train, y_train, epochs, dtype):
    """airbench94's net, optimizer, schedule and Lookahead over `epochs`; returns (model, run_epoch, finish)."""
    batch_size, momentum = HYP["batch_size"], HYP["momentum"]
    kilostep = 1024 * (1 + 1 / (1 - momentum))
    lr = HYP["lr"] / kilostep
    wd = HYP["weight_decay"] * batch_size / kilostep
    lr_biases = lr * HYP["bias_scaler"]
    loss_fn = nn.CrossEntropyLoss(label_smoothing=HYP["label_smoothing"], reduction="none")
    batches = Batches(x_train, y_train, batch_size, dtype)
    total = ceil(len(batches) * epochs)
    model = make_net(dtype)
    norm = [p for k, p in model.named_parameters() if "norm" in k and p.requires_grad]
    other = [p for k, p in model.named_parameters() if "norm" not in k and p.requires_grad]
    optimizer = torch.optim.SGD([{"params": norm, "lr": lr_biases, "weight_decay": wd / lr_biases},
                                 {"params": other, "lr": lr, "weight_decay": wd / lr}], momentum=momentum, nesterov=True)

    def lr_factor(step):        # 23% linear warmup from 0.2x, then linear decay to 0.07x
        warmup = int(total * 0.23)
        if step < warmup:
            f = step / warmup
            return 0.2 * (1 - f) + f
        f = (step - warmup) / (total - warmup)
        return (1 - f) + 0.07 * f

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    alpha = 0.95 ** 5 * (torch.arange(total + 1) / total) ** 3
    lookahead = Lookahead(model)
    init_whitening_conv(model[0], x_train[:5000].to(dtype))
    step = 0

    def run_epoch(epoch):
        nonlocal step
        model[0].bias.requires_grad = epoch < HYP["whiten_bias_epochs"]
        model.train()
        for x, y in batches:
            loss = loss_fn(model(x).float(), y).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            if step % 5 == 0:
                lookahead.update(model, decay=alpha[step].item())
            if step >= total:
                break

    return model, run_epoch, lambda: lookahead.update(model, decay=1.0)


def forward_macs(model, dtype):
    """Multiply-accumulates of one image's forward pass through the convolutions and the linear head."""
    macs = []

    def count(module, inputs, output):
        weight = module.weight
        macs.append(output[0].numel() * weight[0].numel())    # per output value: one filter's weights

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, 32, 32, dtype=dtype).contiguous(memory_format=torch.channels_last))
    for hook in hooks:
        hook.remove()
    return sum(macs)


def bench(args, dtype):
    """--bench-images: the training epochs' seconds on the first images, for benchmarks/cpu_speed.py."""
    import json

    x_train, y_train = load_split(args.data_dir, "train", args.bench_images)
    model, run_epoch, _ = make_training(x_train, y_train, args.epochs, dtype)
    seconds = []
    for epoch in range(ceil(args.epochs)):
        start = time.perf_counter()
        run_epoch(epoch)
        seconds.append(time.perf_counter() - start)
    print("RESULT " + json.dumps({"seconds": seconds[1:], "flops_per_image": 6 * forward_macs(model, dtype),
                                  "images": len(y_train) // HYP["batch_size"] * HYP["batch_size"]}), flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="folder holding train/ and test/, one subfolder per class")
    parser.add_argument("--epochs", type=float, default=9.9, help="airbench94's 9.9 by default")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 compute (airbench uses float16 on a GPU)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--seed", type=int, default=0, help="torch's seed (airbench94 varies it between runs)")
    parser.add_argument("--bench-images", type=int, default=None,
                        help="time the training epochs on this many training images and print them as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    if args.bench_images:
        return bench(args, dtype)

    x_train, y_train = load_split(args.data_dir, "train")
    x_test, y_test = load_split(args.data_dir, "test")
    start = time.perf_counter()
    excluded = 0.0    # seconds spent on the per-epoch test predictions, which training does not need
    model, run_epoch, finish = make_training(x_train, y_train, args.epochs, dtype)
    for epoch in range(ceil(args.epochs)):
        run_epoch(epoch)
        wall = time.perf_counter() - start - excluded
        print(f"epoch {epoch + 1} test {accuracy(model, x_test, y_test, 0, dtype):.4f} "
              f"wall {wall:.1f} s", flush=True)
        excluded = time.perf_counter() - start - wall
    finish()
    wall = time.perf_counter() - start - excluded
    levels = " ".join(f"tta{level} {accuracy(model, x_test, y_test, level, dtype):.4f}" for level in (0, 1, 2))
    print(f"test accuracy: {levels}; {wall:.1f} s in all, {dtype}", flush=True)


if __name__ == "__main__":
    main()
