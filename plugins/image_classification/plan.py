"""What the image plugin chooses from the data and the time budget (``Task.plan``): model, width, input size,
batch, epochs, schedule and augmentation. ``plan_image`` is pure; the machine's speed comes in as a number.

Grey glyph-like images (digits, letters) keep the residual ``cnn_base`` recipe that reaches 99.4% on MNIST.
Everything else (photos) gets ``cnn_fast`` sized by ``suite.budget.choose_by_budget``, trained with the
recipe of the fast-CIFAR line of work: SGD with Nesterov momentum at a high peak rate, warm-up then decay,
label smoothing 0.2, flips and small translations (docs/BENCHMARKS.md has the measurements behind each value).
"""

from __future__ import annotations

from suite.budget import Candidate, TrainingPlan, choose_by_budget, target_epochs_for
from suite_plugins.image_classification.model import FAST_WIDTHS, fast_forward_macs

# With no time_budget_minutes, a photo data set gets this much: CIFAR-10's 45,000 training images reach
# their accuracy bar with room to spare, and a slower machine still stops by the budget.
AUTO_BUDGET_MINUTES = 15.0
PHOTO_SIZES = (64, 96, 128)  # input sides tried for photos of varying size
# The machine's speed comes from timing cnn_fast at REFERENCE_WIDTH (``suite.budget.measure_train_flops_per_s``);
# narrower models run at a lower fraction of it (their small matmuls keep fewer cores busy).
REFERENCE_WIDTH = 32
NARROW_EFFICIENCY = 0.75
# Should the model probe fail: cnn_fast's speed against the float32 matmul probe (the lower of its measured 0.9
# in float32 and 1.2-1.8 in mixed bfloat16).
MATMUL_EFFICIENCY = 0.9


def is_glyphs(meta: dict) -> bool:
    """Grey, small images are digits and glyphs (MNIST-like): they keep the cnn_base recipe."""
    return int(meta["channels"]) == 1 and int(meta["image_size"]) <= 64


def photo_sizes(median_side: int) -> tuple[int, ...]:
    """Input sides worth trying for photos whose median short side is ``median_side`` (0 = unknown): none
    larger than the photos themselves, since upscaling adds cost and no detail."""
    fitting = tuple(s for s in PHOTO_SIZES if not median_side or s <= median_side)
    return fitting or PHOTO_SIZES[:1]


def input_sides(meta: dict) -> tuple[int, ...]:
    """The input sides the plan chooses among: the data's own for one size, else ``photo_sizes``."""
    if int(meta.get("native_sizes", 1)) <= 1:
        return (int(meta["image_size"]),)
    return photo_sizes(int(meta.get("median_side") or 0))


def probe_size(meta: dict) -> int:
    """The side the speed probe trains at: the middle of the sides the plan may choose."""
    sides = input_sides(meta)
    return sides[len(sides) // 2]


def candidates(meta: dict) -> list[Candidate]:
    """cnn_fast at every width (and, for photos of varying size, every input side), cheapest first."""
    channels = int(meta["channels"])
    out = []
    for size in input_sides(meta):
        for width in FAST_WIDTHS:
            efficiency = NARROW_EFFICIENCY if width < REFERENCE_WIDTH else 1.0
            out.append(Candidate(f"cnn_fast width {width} at {size} px", {"width": width, "image_size": size},
                                 3 * 2 * fast_forward_macs(width, size, channels), efficiency))
    return sorted(out, key=lambda c: c.train_flops / c.efficiency)


def resize_policy(sizes) -> str:
    """How images of varying shape become the model's square: ``crop`` (centre square) when nine in ten of the
    sampled images are at most 4:3, so a crop loses at most a quarter of a picture; ``squash`` (resize whole)
    when wider shapes are common, where a centre crop would cut off much of the subject."""
    sizes = list(sizes.elements() if hasattr(sizes, "elements") else sizes)  # a Counter weighs each image once
    if len(set(sizes)) <= 1:
        return "squash"  # one size: resizing keeps every pixel's neighbourhood as it is
    near_square = sum(max(h, w) <= (4 / 3) * min(h, w) + 1 for h, w in sizes)
    return "crop" if near_square >= 0.9 * len(sizes) else "squash"


def augmentation(size: int, uniform: bool, channels: int = 3) -> dict:
    """Flips and small shifts for small photos of one size (CIFAR-like, the airbench recipe); photos of varying
    size get a random resized crop of 25-100% of the area (aspect 3:4-4:3), flips and colour jitter, the
    ImageNet-style recipe scaled down for a few thousand images trained from scratch."""
    if uniform and size <= 64:
        return {"flip": "horizontal", "rotation": 0.0, "zoom": 0.0, "translation": 2 / 32, "contrast": 0.0,
                "crop_scale": 0.0, "color": 0.0, "fill_mode": "reflect"}
    return {"flip": "horizontal", "rotation": 0.0, "zoom": 0.0, "translation": 0.0, "contrast": 0.0,
            "crop_scale": 0.25, "color": 0.2 if channels == 3 else 0.0, "fill_mode": "reflect"}


def _policy_words(meta: dict) -> str:
    if meta.get("resize_policy") == "crop":
        return "mostly near-square shapes: centre square crop, then resize, at evaluation"
    return "shapes up to 16:9 or wider: whole image resized (a centre crop would cut the subject) at evaluation"


def _warmup(epochs: int) -> float:
    """15% of the run, at least one epoch, but never more than 30% of a short run (one epoch set by hand)."""
    return round(max(min(1.0, 0.3 * epochs), 0.15 * epochs), 1)


def plan_image(config, meta: dict, n_train: int, explicit: frozenset[str], *, flops_per_s: float) -> TrainingPlan:
    """The plan for one data set: pure in its arguments (config, data statistics, budget, and the machine's
    speed as cnn_fast at ``REFERENCE_WIDTH`` trains, in FLOP/s)."""
    model = config.model if "model" in explicit else "auto"
    if model == "auto" and is_glyphs(meta):
        return TrainingPlan({"model": "cnn_base"}, {}, ("grey images of at most 64 px look like glyphs (digits, "
                                                        "letters): the residual cnn_base recipe",))
    if model not in ("auto", "cnn_fast"):
        return TrainingPlan({}, {}, (f"model {model} as set: its own defaults",))
    uniform = int(meta.get("native_sizes", 1)) <= 1
    auto_budget = "time_budget_minutes" not in explicit or config.time_budget_minutes <= 0
    budget_min = AUTO_BUDGET_MINUTES if auto_budget else float(config.time_budget_minutes)
    target = target_epochs_for(n_train)
    pool = candidates(meta)
    if "width" in explicit and config.width:
        pool = [c for c in pool if c.values["width"] == config.width] or pool
    if "image_size" in explicit and config.image_size:
        pool = [c for c in pool if c.values["image_size"] == config.image_size] or pool
    choice = choose_by_budget(pool, n_train=n_train, budget_s=60 * budget_min, flops_per_s=flops_per_s,
                              target_epochs=target, max_epochs=2 * target, min_epochs=2,
                              overhead_s=2.0)
    size = int(choice.candidate.values["image_size"])
    epochs = choice.epochs
    values = {
        "model": "cnn_fast", **choice.candidate.values, "epochs": epochs, "batch_size": 256,
        "optimizer": "sgd", "learning_rate": 0.4, "weight_decay": 5e-4, "label_smoothing": 0.2,
        "lr_schedule": "warmup_cosine", "warmup_epochs": _warmup(config.epochs if "epochs" in explicit else epochs), "dropout": 0.0,
    }
    if auto_budget:
        values["time_budget_minutes"] = budget_min
    reasons = (f"colour or large images ({'one size' if uniform else 'varying sizes'}, {meta['channels']} "
               f"channel(s), {len(meta['class_names'])} classes): cnn_fast",
               *choice.reasons,
               f"input {size} px; " + ("flips and 2-px shifts" if uniform and size <= 64 else
                                       "random resized crops (25-100% of the area), flips and colour jitter; "
                                       f"{_policy_words(meta)}") + "; SGD-Nesterov, peak rate 0.4, "
               "batch 256, label smoothing 0.2")
    aug = {k: (getattr(config, k) if k in explicit else v)
           for k, v in augmentation(size, uniform, int(meta["channels"])).items()}
    return TrainingPlan(values, {"image_size": size, "augmentation": aug}, reasons,
                        cpu_bfloat16=True)
