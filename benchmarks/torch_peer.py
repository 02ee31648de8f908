"""The PyTorch peer of the GPU figures: torchvision's ResNet trained on a batch kept on the device.

The figure tfresnet's ResNet-50 is held to (issue 18: at least 1.1x it on the same card, in the
same run): torchvision ``resnet50`` (v1.5), SGD with momentum, cross-entropy, ``channels_last``,
bfloat16 autocast and ``torch.compile``, one synthetic batch resident on the GPU. Warm-up rounds
run until two in a row agree within ``--agree``; then ``--repeats`` timed rounds, the best counts.
``benchmarks/gpu.sh resnet50`` runs it before the TensorFlow variants, whose table then shows the
ratio to it.

    python benchmarks/torch_peer.py --model resnet50 --batch_size 256 --steps 50 --json torch.json

Without torchvision (the CPU-only torch wheel here), the same architecture comes from
``tests/torch_reference.py``, which restates torchvision's layer for layer; the output says which.
Exits 0 with ``"skipped"`` in the JSON when torch itself is missing, so ``gpu.sh`` goes on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def build(name: str):
    """``(module, where it came from)``: torchvision's model, else the restated reference."""
    try:
        import torchvision  # noqa: PLC0415

        return getattr(torchvision.models, name)(), f"torchvision {torchvision.__version__}"
    except ImportError:
        sys.path.insert(0, os.path.join(REPO, "tests"))
        from torch_reference import ARCHITECTURES, ResNet  # noqa: PLC0415

        key = name if name in ARCHITECTURES else f"{name}_v1_5"
        return ResNet(*ARCHITECTURES[key]), "tests/torch_reference.py (torchvision not installed)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet50", help="a torchvision model name")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=50, help="steps per timed round")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds after the warm-up; the best counts")
    parser.add_argument("--agree", type=float, default=0.03, help="warm up until two rounds agree within this")
    parser.add_argument("--max_warmup", type=int, default=8, help="at most this many warm-up rounds")
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True, help="torch.compile")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    try:
        import torch  # noqa: PLC0415
    except ImportError:
        print("torch is not installed: no PyTorch peer")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"skipped": "torch is not installed"}, f)
        return

    device = "cuda" if torch.cuda.is_available() else "cpu"
    card = torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or "CPU"
    torch.manual_seed(0)
    net, origin = build(args.model)
    net = net.to(device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    images = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device)
    images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 1000, (args.batch_size,), device=device)
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=dtype, enabled=args.precision == "bf16"):
            loss = torch.nn.functional.cross_entropy(net(images), labels)
        loss.backward()
        optimizer.step()
        return loss

    if args.compile:
        step = torch.compile(step)

    def timed_round() -> float:
        tic = time.perf_counter()
        for _ in range(args.steps):
            loss = step()
        loss.item()  # waits for the device
        return args.steps * args.batch_size / (time.perf_counter() - tic)

    print(f"{platform.node()} | {card} | torch {torch.__version__} | {args.model} from {origin} | batch "
          f"{args.batch_size} {args.image_size}x{args.image_size} | {args.precision} | "
          f"{'torch.compile' if args.compile else 'eager'}", flush=True)
    tic = time.perf_counter()
    timed_round()  # compilation
    compile_seconds = time.perf_counter() - tic
    warmup = [timed_round(), timed_round()]
    while abs(warmup[-1] / warmup[-2] - 1) > args.agree and len(warmup) < args.max_warmup:
        warmup.append(timed_round())
    rounds = [timed_round() for _ in range(args.repeats)]
    print(f"torch {'compile' if args.compile else 'eager'} {args.precision}: {max(rounds):.1f} images/s (rounds "
          + " ".join(f"{r:.0f}" for r in rounds) + "; warm-up " + " ".join(f"{r:.0f}" for r in warmup)
          + f"; first round {compile_seconds:.1f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "card": card, "torch": torch.__version__, "model_source": origin,
                       "images_per_sec": max(rounds), "rounds": rounds, "warmup": warmup,
                       "first_round_seconds": compile_seconds}, f, indent=1)


if __name__ == "__main__":
    main()
