"""The machine's limit: sustained float32 matmul GFLOP/s, each default model's training FLOPs per example, and
the fraction of that peak which training reaches (from the plugin benchmarks' measured throughput)."""

from __future__ import annotations

import json
import os
import time

import numpy as np

from bench.common import RESULTS, machine, md_table, save_results

COMMAND = "python -m bench.run --only machine"


def matmul_gflops(n: int = 2048, seconds: float = 5.0) -> float:
    import tensorflow as tf

    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))

    @tf.function
    def mm(a, b):
        return tf.matmul(a, b)

    mm(a, b).numpy()
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        mm(a, b).numpy()
        count += 1
    elapsed = time.perf_counter() - t0
    return 2 * n**3 * count / elapsed / 1e9


def forward_flops(model, example=None) -> float | None:
    """FLOPs of one example's forward pass, counted by TensorFlow's profiler on the traced graph.

    Inputs with free spatial dimensions (images of any size) are traced at ``example``'s shape."""
    import tensorflow as tf

    spec = [tf.TensorSpec([1, *x.shape[1:]], x.dtype) for x in model.inputs]
    if any(None in s.shape.as_list() for s in spec):
        if example is None or len(spec) != 1:
            return None
        spec = [tf.TensorSpec([1, *np.shape(example)], spec[0].dtype)]
    fn = tf.function(lambda *xs: model(list(xs) if len(xs) > 1 else xs[0], training=False))
    return profiled_flops(fn.get_concrete_function(*spec))


def _einsum_flops(graph, node):
    """2 x the product of every dimension an Einsum names (multiply-adds over the contraction): the profiler
    has no count for Einsum, which carries Keras' attention and EinsumDense projections."""
    from tensorflow.python.framework import graph_util, ops

    inputs = node.attr["equation"].s.decode().replace(" ", "").split("->")[0].split(",")
    sizes: dict[str, int] = {}
    for letters, name in zip(inputs, node.input, strict=False):
        shape = graph_util.tensor_shape_from_node_def_name(graph, name)
        shape.assert_is_fully_defined()
        dims = shape.as_list()
        if "..." in letters:  # the leading dimensions, broadcast from the right: named from the right
            n = len(dims) - len(letters) + 3
            letters = letters.replace("...", "".join(chr(0x100 + n - 1 - i) for i in range(n)))
        for letter, size in zip(letters, dims, strict=True):
            sizes[letter] = max(sizes.get(letter, 1), size)  # a broadcast 1 never hides the real size
    return ops.OpStats("flops", int((2 if len(inputs) > 1 else 1) * np.prod(list(sizes.values()))))


def _count_einsum() -> None:
    from tensorflow.python.framework import ops

    try:
        ops.RegisterStatistics("Einsum", "flops")(_einsum_flops)
    except KeyError:  # already registered in this process
        pass


def profiled_flops(concrete) -> float | None:
    """Float operations in a concrete function's graph, its variables frozen to constants."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    _count_einsum()

    frozen = convert_variables_to_constants_v2(concrete)
    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    info = tf.compat.v1.profiler.profile(graph=frozen.graph, options=opts)
    return float(info.total_float_ops) if info else None


def translation_training(peak: float) -> tuple[list, dict] | None:
    """The default translation Transformer (vocabularies of the default size) on one training pair of the mean
    source and target length of ``spa-eng/train.tsv``, counted in words and punctuation marks (WordPiece splits
    a rare word further, so the count is a slight undercount); the rate is the translation benchmark's
    pairs x epochs / training seconds (per-epoch validation included)."""
    import re
    import statistics

    import tensorflow as tf

    from bench.common import shared_data
    from suite_plugins.translation.model import RESERVED, TranslationTransformer
    from suite_plugins.translation.task import TranslationConfig, read_pairs

    folder = shared_data("spa-eng")
    if folder is None:
        return None
    pairs = read_pairs(folder / "train.tsv")
    words = re.compile(r"\w+|[^\w\s]")
    src = statistics.fmean(len(words.findall(a)) for a, _ in pairs)
    tgt = statistics.fmean(len(words.findall(b)) for _, b in pairs) + 1  # START (inputs) / END (labels)
    cfg = TranslationConfig()

    def vocab(n):
        return RESERVED + [f"w{i}" for i in range(n - len(RESERVED))]

    model = TranslationTransformer(
        vocab(cfg.source_vocab_size), vocab(cfg.target_vocab_size), cfg.source_sequence_length,
        cfg.target_sequence_length, cfg.encoder_layers, cfg.decoder_layers, cfg.embed_dim, cfg.num_heads,
        cfg.intermediate_dim, cfg.dropout)
    fn = tf.function(lambda e, d: model({"encoder_inputs": e, "decoder_inputs": d}, training=False))
    flops = profiled_flops(fn.get_concrete_function(tf.TensorSpec([1, round(src)], tf.int32),
                                                    tf.TensorSpec([1, round(tgt)], tf.int32)))
    rate = None
    result = RESULTS / "translation.json"
    if result.exists():
        suite = json.loads(result.read_text())["suite"]
        if suite.get("train_seconds") and suite.get("epochs_done"):
            rate = suite["counts"]["train"] * suite["epochs_done"] / suite["train_seconds"]
    frac = 3 * flops * rate / 1e9 / peak if (flops and rate) else None
    note = (f"default config (vocabularies 8000/8000), one pair of the mean spa-eng train length: {round(src)} "
            f"source and {round(tgt)} target tokens")
    row = ["translation", f"{flops / 1e6:.3g}" if flops else "-", f"{rate:.0f}" if rate else "-",
           f"{frac:.1%}" if frac else "-", note]
    return row, {"forward_flops": flops, "train_examples_per_sec": rate, "fraction": frac,
                 "source_tokens": src, "target_tokens": tgt}


def numeric_part(model, example):
    """The model from its text vectorizer's output on, and the example vectorized: the profiler counts no
    FLOPs in string ops, and tokenizing is not where a text model's arithmetic is."""
    import keras

    layers = [la for la in model.layers if isinstance(la, keras.layers.TextVectorization)]
    if not layers:
        return None, None
    outputs = [la.output for la in layers]  # an ensemble has one vectorizer per kind of member
    text = np.asarray([example], dtype=object)
    return (keras.Model(outputs if len(outputs) > 1 else outputs[0], model.output),
            np.asarray(layers[0](text))[0] if len(layers) == 1 else None)


def measured_rate(task_name: str, default_epochs: int | None = None) -> float | None:
    """Training examples/s from the plugin's own benchmark results (bench/results/<task>.json)."""
    result = RESULTS / f"{task_name}.json"
    if not result.exists():
        return None
    saved = json.loads(result.read_text())
    rate = saved.get("train_examples_per_sec") or (saved.get("suite") or {}).get("examples_per_sec")
    standard = (saved.get("protocols") or {}).get("standard")  # speech: examples x epochs / training seconds
    if rate is None and standard and standard.get("suite_train_seconds"):
        epochs = (saved.get("overrides") or {}).get("epochs") or default_epochs
        if epochs:
            rate = standard["counts"]["train"] * epochs / standard["suite_train_seconds"]
    return rate


def run(quick: bool = True) -> str:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from suite.data import parse_source
    from suite.registry import get_registry

    peak = matmul_gflops(seconds=3.0 if quick else 10.0)
    rows, data = [], {"peak_gflops": peak, "models": {}}
    for task in get_registry().tasks():
        if task.output_kind != "classes":
            continue
        try:
            config = task.make_config()
            bundle = task.load_data(parse_source("sample"), task.make_config(task.sample_overrides))
            model = task.build_model(config, bundle)
            example = next(iter(bundle.train.take(1)))[0].numpy()
            note = "default config"
            if model.inputs[0].dtype == "string":
                from suite_plugins.sentiment.byte_tokenizer import unrolled_copy

                model, example = numeric_part(model, example)
                model = unrolled_copy(model) if model is not None else None  # loop bodies are not counted
                note = ("default config, from the tokenizer's output on (string ops are not counted), recurrent "
                        "layers unrolled")
            flops = forward_flops(model, example) if model is not None else None
        except Exception as err:  # a plugin whose model cannot be traced at a fixed shape
            rows.append([task.name, "-", "-", "-", f"not counted: {type(err).__name__}"])
            continue
        rate = measured_rate(task.name, config.epochs)
        if flops is not None and flops < 1e3:
            flops = None  # string/sparse ops the profiler does not count
        train_flops = 3 * flops if flops else None  # forward + backward ~ 3x forward
        frac = (train_flops * rate / 1e9 / peak) if (train_flops and rate) else None
        data["models"][task.name] = {"forward_flops": flops, "train_examples_per_sec": rate, "fraction": frac}
        note = note if flops else "string/sparse ops: not counted by the profiler"
        rows.append([task.name, f"{flops / 1e6:.3g}" if flops else "-", f"{rate:.0f}" if rate else "-",
                     f"{frac:.1%}" if frac else "-", note])
    translation = translation_training(peak)
    if translation is not None:
        rows.append(translation[0])
        data["models"]["translation"] = translation[1]
    save_results("machine" + ("_quick" if quick else ""), data)
    return "\n".join([
        "## The machine's limit",
        "",
        f"Sustained float32 matmul (2048x2048, `tf.matmul`): **{peak:.1f} GFLOP/s**.",
        "",
        "Training FLOPs per example are taken as 3x the forward pass counted by TensorFlow's profiler; the "
        "training throughput comes from that plugin's benchmark (bench/results/<task>.json).",
        "",
        md_table(["task", "forward MFLOPs/example", "train examples/s", "fraction of matmul peak", "note"], rows),
        "",
        f"Command: `{COMMAND}{' --quick' if quick else ''}` · machine: {machine()}",
        "",
    ])
