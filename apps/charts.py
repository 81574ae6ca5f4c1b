"""Charts and explanation drawings: top-k bars, confusion matrix, heatmap overlay, highlighted tokens, attention."""

from __future__ import annotations

import html

import altair as alt
import numpy as np
import pandas as pd


def topk_bars(top: list[dict]) -> alt.Chart:
    df = pd.DataFrame([{"label": str(t["label"]), "probability": float(t["score"])} for t in top])
    return (
        alt.Chart(df)
        .mark_bar()
        .encode(
            x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%", tickCount=5)),
            y=alt.Y("label:N", sort="-x", title=None),
            tooltip=["label", alt.Tooltip("probability:Q", format=".3f")],
        )
    )


def confusion_chart(matrix: list[list[int]], class_names: list[str]) -> alt.Chart:
    names = [str(n) for n in class_names]
    rows = [
        {"true": names[i], "predicted": names[j], "count": int(v)}
        for i, row in enumerate(matrix)
        for j, v in enumerate(row)
    ]
    df = pd.DataFrame(rows)
    size = max(180, min(640, 36 * len(names)))
    base = alt.Chart(df).encode(
        x=alt.X("predicted:N", sort=names), y=alt.Y("true:N", sort=names), tooltip=["true", "predicted", "count"]
    )
    heat = base.mark_rect().encode(color=alt.Color("count:Q", scale=alt.Scale(scheme="blues")))
    text = base.mark_text(fontSize=11).encode(
        text="count:Q",
        color=alt.condition(alt.datum.count > df["count"].max() / 2, alt.value("white"), alt.value("black")),
    )
    return (heat + text).properties(width=size, height=size)


def merge_word_pieces(tokens: list[str], weights, axis: int, *, reduce: str = "sum"):
    """Whole words from WordPiece tokens ("tren", "##es" -> "trenes") with their weights joined along ``axis``:
    summed for source words (the attention a word gets is its pieces' total), averaged for output words (each
    output row sums to one, and so does their mean)."""
    w = np.asarray(weights, dtype=np.float32)
    words: list[str] = []
    groups: list[list[int]] = []
    for i, token in enumerate(tokens[: w.shape[axis]]):
        if token.startswith("##") and words:
            words[-1] += token[2:]
            groups[-1].append(i)
        else:
            words.append(token)
            groups.append([i])
    join = np.sum if reduce == "sum" else np.mean
    merged = [join(np.take(w, g, axis=axis), axis=axis, keepdims=True) for g in groups]
    return words, (np.concatenate(merged, axis=axis) if merged else w)


def attention_chart(source: list[str], target: list[str], weights) -> alt.Chart:
    source, w = merge_word_pieces(list(source), weights, axis=1, reduce="sum")
    target, w = merge_word_pieces(list(target), w, axis=0, reduce="mean")
    # Position-prefixed labels keep repeated tokens apart.
    src = [f"{i}:{t}" for i, t in enumerate(source)]
    tgt = [f"{i}:{t}" for i, t in enumerate(target)]
    rows = [
        {"target": tgt[i], "source": src[j], "weight": float(w[i, j])}
        for i in range(min(len(tgt), w.shape[0]))
        for j in range(min(len(src), w.shape[1]))
    ]
    return (
        alt.Chart(pd.DataFrame(rows))
        .mark_rect()
        .encode(
            # Every word labelled: Vega-Lite's default drops labels it thinks overlap (every other one here).
            x=alt.X("source:N", sort=src, title="source", axis=alt.Axis(labelOverlap=False, labelAngle=-45)),
            y=alt.Y("target:N", sort=tgt, title="output", axis=alt.Axis(labelOverlap=False)),
            color=alt.Color("weight:Q", scale=alt.Scale(scheme="greens")),
            tooltip=["source", "target", alt.Tooltip("weight:Q", format=".3f")],
        )
        .properties(width=max(200, 28 * len(src)), height=max(120, 24 * len(tgt)))
    )


def to_rgb(image) -> np.ndarray:
    a = np.asarray(image)
    if a.dtype != np.uint8:
        a = np.clip(a * (255.0 if a.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    return a[..., :3]


def heatmap_overlay(image, heatmap, alpha: float = 0.45) -> np.ndarray:
    """The heatmap in a colour map, resized to the image and blended over it."""
    from matplotlib import colormaps
    from PIL import Image

    rgb = to_rgb(image)
    heat = np.asarray(heatmap, dtype=np.float32)
    heat = np.squeeze(heat)
    lo, hi = float(np.min(heat)), float(np.max(heat))
    heat = (heat - lo) / (hi - lo) if hi > lo else np.zeros_like(heat)
    resized = np.asarray(
        Image.fromarray((heat * 255).astype(np.uint8)).resize((rgb.shape[1], rgb.shape[0]), Image.BILINEAR)
    ).astype(np.float32) / 255.0
    colored = (colormaps["jet"](resized)[..., :3] * 255).astype(np.float32)
    return np.clip((1 - alpha) * rgb.astype(np.float32) + alpha * colored, 0, 255).astype(np.uint8)


def token_html(tokens: list[str], scores: list[float]) -> str:
    """Tokens with a background: green for positive scores, red for negative, stronger when larger."""
    s = np.asarray(scores, dtype=np.float32)
    scale = float(np.max(np.abs(s))) if s.size and np.max(np.abs(s)) > 0 else 1.0
    spans = []
    for tok, score in zip(tokens, s, strict=False):
        a = min(1.0, abs(float(score)) / scale) * 0.8
        color = f"rgba(34,160,70,{a:.2f})" if score >= 0 else f"rgba(220,50,50,{a:.2f})"
        spans.append(
            f'<span title="{float(score):+.3f}" style="background:{color};padding:2px 3px;'
            f'border-radius:3px;margin:1px;line-height:2">{html.escape(str(tok))}</span>'
        )
    return "<div>" + " ".join(spans) + "</div>"


def spectrogram_image(spec_db, height: int = 160) -> np.ndarray:
    """A (mel x frames) dB spectrogram as an RGB image: low frequencies at the bottom, a viridis-like map."""
    spec = np.asarray(spec_db, np.float32)
    lo, hi = np.percentile(spec, 2), np.percentile(spec, 99.5)
    norm = np.clip((spec - lo) / max(hi - lo, 1e-6), 0.0, 1.0)[::-1]
    # A small perceptual ramp (dark blue -> teal -> yellow) without importing matplotlib.
    stops = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], np.float32)
    pos = norm * (len(stops) - 1)
    i = np.clip(pos.astype(int), 0, len(stops) - 2)
    frac = (pos - i)[..., None]
    rgb = stops[i] * (1 - frac) + stops[i + 1] * frac
    rows = np.linspace(0, rgb.shape[0] - 1, height).astype(int)
    return rgb[rows].astype(np.uint8)
