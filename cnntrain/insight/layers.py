"""The textbook arithmetic of a built Keras model, layer by layer.

For each layer: its output size with the (I + 2P - F) / S + 1 working shown,
its parameters with the (D x Fh x Fw + 1) x M working shown, the receptive field
of one output unit in input pixels, and the multiply-accumulates (MACs) it costs
per image. Then totals and the chapter's pitfalls (a Dense layer that holds most
of the weights, pooling a 1x1 map, strides that skip pixels).

Layers are recognised by what they are (their Keras base class names and
attributes), so Conv1D/2D/3D, depthwise, separable and transposed convolutions
and every pooling layer are covered; any other layer still gets its parameter
count (`layer.count_params()`) and output shape, with an empty formula.
Every formula is checked against Keras' own count and dropped if it disagrees,
so what is shown is never wrong, at worst missing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from cnntrain.errors import CnntrainError


@dataclass
class LayerRow:
    """One layer of `cnntrain summary`: its shapes, parameters, window, receptive field and MACs."""
    name: str                     # layer.name
    type: str                     # class name, e.g. "Conv2D"
    output_shape: tuple           # without the batch dimension, e.g. (26, 26, 32)
    params: int
    trainable: int
    formula: str                  # "(1 x 3 x 3 + 1) x 32 = 320"; "" when no params or unknown
    kernel: str                   # "3x3" ("3x3 dil 2" when dilated); "" for non conv/pool layers
    stride: str                   # "1x1"
    padding: str                  # "valid" / "same"
    size_arithmetic: str          # "(28 + 2x0 - 3) / 1 + 1 = 26"; "" when the size does not change
    receptive_field: tuple | None  # (h, w) in input pixels; None: whole image (after Flatten) or unknown
    macs: int                     # multiply-accumulates per image
    receptive_field_text: str = ""  # "8x8", "36x36 (whole image)", "whole image", "unknown"


# ----------------------------------------------------------------- recognising layers

_WINDOWED = ("conv", "depthwise", "separable", "transpose", "pool")
_SIMPLE = {"Dense": "dense", "BatchNormalization": "bn", "ZeroPadding1D": "zeropad",
           "ZeroPadding2D": "zeropad", "ZeroPadding3D": "zeropad", "Cropping1D": "crop",
           "Cropping2D": "crop", "Cropping3D": "crop", "UpSampling1D": "upsample",
           "UpSampling2D": "upsample", "UpSampling3D": "upsample"}


def _kind(layer) -> str:
    """conv, depthwise, separable, transpose, pool, global_pool, dense, bn, zeropad, crop, upsample or other."""
    b = {cls.__name__ for cls in type(layer).__mro__}
    for base, kind in (("BaseConvTranspose", "transpose"), ("BaseSeparableConv", "separable"),
                       ("BaseDepthwiseConv", "depthwise"), ("BaseConv", "conv"),
                       ("BaseGlobalPooling", "global_pool"), ("BasePooling", "pool")):
        if base in b:
            return kind
    return next((kind for name, kind in _SIMPLE.items() if name in b), "other")


def _tup(value, n: int) -> tuple:
    if value is None:
        return (1,) * n
    if isinstance(value, int):
        return (value,) * n
    value = tuple(value)
    return value * n if len(value) == 1 and n > 1 else value


def _window(layer, kind: str, n: int) -> tuple[tuple, tuple, tuple]:
    """(kernel, strides, dilation) of a conv or pooling layer along its n spatial dims."""
    if kind == "pool":
        k = _tup(layer.pool_size, n)
        return k, _tup(layer.strides or layer.pool_size, n), (1,) * n
    return _tup(layer.kernel_size, n), _tup(layer.strides, n), _tup(getattr(layer, "dilation_rate", 1), n)


def _spatial(shape: tuple, layer=None) -> tuple:
    """Spatial dims of a shape without batch: (H, W) of (H, W, C)."""
    if len(shape) < 2:
        return ()
    first = getattr(layer, "data_format", None) == "channels_first"
    return tuple(shape[1:]) if first else tuple(shape[:-1])


def _x(values) -> str:
    return "x".join(str(v) for v in values)


def _dims_text(parts: list[str]) -> str:
    """One text when every dimension reads the same, else 'H: ..., W: ...'; "" if any is unknown."""
    if not parts or not all(parts):
        return ""
    if len(set(parts)) == 1:
        return parts[0]
    names = {1: ["L"], 2: ["H", "W"], 3: ["D", "H", "W"]}.get(len(parts), [f"d{i}" for i in range(len(parts))])
    return ", ".join(f"{n}: {p}" for n, p in zip(names, parts))


# ----------------------------------------------------------------- size arithmetic

def _conv_size(i: int, k: int, s: int, d: int, padding: str) -> tuple[int, str]:
    """Output length and its working for a conv/pool along one dimension (Keras' rules)."""
    ke = d * (k - 1) + 1
    dil = f" (dilated kernel {d}x({k}-1)+1 = {ke})" if d != 1 else ""
    if padding == "same":
        o = -(-i // s)
        pad = (o - 1) * s + ke - i
        if pad < 0:
            return o, f"same: ceil({i} / {s}) = {o}{dil}"
        if pad % 2 == 0:
            how = f"({i} + 2x{pad // 2} - {ke}) / {s} + 1 = {o}"
        else:  # TensorFlow puts the odd pixel at the bottom/right
            how = f"({i} + {pad // 2}+{pad - pad // 2} - {ke}) / {s} + 1 = {o}"
        return o, f"same: ceil({i} / {s}) = {o}, i.e. {how}{dil}"
    o = (i - ke) // s + 1
    if (i - ke) % s == 0:
        return o, f"({i} + 2x0 - {ke}) / {s} + 1 = {o}{dil}"
    return o, f"floor(({i} + 2x0 - {ke}) / {s}) + 1 = {o}{dil}"


def _transpose_size(i: int, k: int, s: int, d: int, padding: str) -> tuple[int, str]:
    ke = d * (k - 1) + 1
    if padding == "same" or ke < s:
        o = i * s if padding == "same" else i * s + max(ke - s, 0)
        return o, f"{i} x {s} = {o}"
    o = i * s + ke - s
    return o, f"({i} - 1) x {s} + {ke} = {o}"


def _windowed(layer, kind: str, in_shape: tuple, out_shape: tuple, params: int):
    """formula, kernel, stride, padding, size_arithmetic, macs of a conv-like or pooling layer."""
    in_sp, out_sp = _spatial(in_shape, layer), _spatial(out_shape, layer)
    k, s, dil = _window(layer, kind, len(in_sp))
    padding = str(getattr(layer, "padding", "valid")).lower()
    kernel = _x(k) + (f" dil {_x(dil) if len(set(dil)) > 1 else dil[0]}" if any(v != 1 for v in dil) else "")
    sizer = _transpose_size if kind == "transpose" else _conv_size
    parts = []
    for i, o_real, kk, ss, dd in zip(in_sp, out_sp, k, s, dil):
        o, text = sizer(i, kk, ss, dd, padding)
        parts.append(text if o == o_real else "")
    d_in = in_shape[0] if getattr(layer, "data_format", None) == "channels_first" else in_shape[-1]
    ks, kp = " x ".join(str(v) for v in k), math.prod(k)
    bias = bool(getattr(layer, "use_bias", False))
    formula, expected, macs, tail = "", None, 0, "" if bias else " (no bias)"
    if kind in ("conv", "transpose"):
        g = int(getattr(layer, "groups", 1) or 1)
        m, per = layer.filters, d_in // g
        expected = (per * kp + bias) * m
        formula = f"({per} x {ks} + 1) x {m}" if bias else f"{per} x {ks} x {m}"
        if g != 1:
            tail += f" (groups {g}: {d_in} / {g} channels per filter)"
        # a transposed conv spreads each input pixel over k x k outputs
        macs = math.prod(in_sp if kind == "transpose" else out_sp) * m * per * kp
    elif kind == "depthwise":
        dm = int(layer.depth_multiplier)
        mult = f" x {dm}" if dm != 1 else ""
        expected = (kp + bias) * d_in * dm
        formula = f"({ks} + 1) x {d_in}{mult}" if bias else f"{ks} x {d_in}{mult}"
        macs = math.prod(out_sp) * d_in * dm * kp
    elif kind == "separable":
        dm, m = int(layer.depth_multiplier), layer.filters
        mid = d_in * dm
        expected = kp * mid + mid * m + (m if bias else 0)
        formula = (f"depthwise {ks} x {d_in}{f' x {dm}' if dm != 1 else ''} + pointwise {mid} x {m}"
                   + (f" + {m} biases" if bias else ""))
        tail = ""
        macs = math.prod(out_sp) * (mid * kp + mid * m)
    formula = f"{formula} = {expected:,}{tail}" if expected is not None and expected == params else ""
    return formula, kernel, _x(s), padding, _dims_text(parts), macs


def _reshaping_size(layer, kind: str, in_shape: tuple, out_shape: tuple) -> str:
    """The working of ZeroPadding / Cropping / UpSampling sizes, "" for other layers."""
    in_sp, out_sp = _spatial(in_shape, layer), _spatial(out_shape, layer)
    n = len(in_sp)
    if kind not in ("zeropad", "crop", "upsample") or n == 0 or len(out_sp) != n:
        return ""
    try:
        if kind == "upsample":
            return _dims_text([f"{i} x {f} = {o}" if i * f == o else ""
                               for i, f, o in zip(in_sp, _tup(layer.size, n), out_sp)])
        pairs = layer.padding if kind == "zeropad" else layer.cropping
        pairs = pairs if n > 1 else (pairs,)
        sign = "+" if kind == "zeropad" else "-"
        return _dims_text([f"{i} {sign} {a} {sign} {b} = {o}" if i + (a + b) * (1 if sign == "+" else -1) == o
                           else "" for i, (a, b), o in zip(in_sp, pairs, out_sp)])
    except (AttributeError, TypeError, ValueError):
        return ""


def _layer_shapes(layer, previous: tuple | None) -> tuple[tuple | None, tuple | None]:
    def shape(attr):
        try:
            return tuple(getattr(layer, attr).shape)[1:]
        except (AttributeError, ValueError, TypeError):
            return None
    in_shape = shape("input") or previous
    out_shape = shape("output")
    if out_shape is None and in_shape is not None:
        try:
            out_shape = tuple(layer.compute_output_shape((None, *in_shape))[1:])
        except Exception:  # a layer's own failure just means "unknown"
            out_shape = None
    return in_shape, out_shape


# ----------------------------------------------------------------- receptive field

def _update_rf(rf, layer, kind: str, in_shape, out_shape):
    """Follow the receptive field through one layer.

    rf is a list of [size, jump] per spatial dim (size: input pixels one unit sees;
    jump: input pixels between neighbouring units), "whole" once every unit sees
    the whole image (after Flatten, Dense on a flat vector, global pooling), or
    "unknown". For a conv/pool of kernel k, dilation d, stride s:
    k_eff = d(k-1)+1, size += (k_eff-1)*jump, jump *= s. Padding, cropping,
    activations, normalization and dropout leave both alone. (Where the field
    sits, the "start" of the usual algorithm, does not change its size, so it is
    not tracked.)
    """
    if not isinstance(rf, list):
        return rf
    if in_shape is None or out_shape is None:
        return "unknown"
    in_sp, out_sp = _spatial(in_shape, layer), _spatial(out_shape, layer)
    n = len(rf)
    if kind in _WINDOWED and len(in_sp) == n:
        k, s, d = _window(layer, kind, n)
        for state, kk, ss, dd in zip(rf, k, s, d):
            ke = dd * (kk - 1) + 1
            if kind == "transpose":  # an output unit depends on at most ceil(k_eff / s) input units
                state[0] += (-(-ke // ss) - 1) * state[1]
                state[1] /= ss
            else:
                state[0] += (ke - 1) * state[1]
                state[1] *= ss
        return rf
    if kind == "global_pool" or len(out_shape) <= 1 or len(out_sp) != n:
        return "whole"
    if kind == "upsample":
        for state, f in zip(rf, _tup(layer.size, n)):
            state[1] /= f
        return rf
    if kind in ("zeropad", "crop") or tuple(in_sp) == tuple(out_sp):
        return rf
    return "unknown"  # a layer we do not know changed the map's size


def _rf_value(rf) -> tuple | None:
    return tuple(math.ceil(size) for size, _ in rf) if isinstance(rf, list) else None


def _rf_text(rf, image: tuple) -> str:
    if not isinstance(rf, list):
        return "whole image" if rf == "whole" else "unknown"
    value = _rf_value(rf)
    return _x(value) + (" (whole image)" if all(v >= i for v, i in zip(value, image)) else "")


# ----------------------------------------------------------------- the public API

def describe(model) -> list[LayerRow]:
    """One LayerRow per layer of a built model (the InputLayer left out)."""
    try:
        input_shape = tuple(model.inputs[0].shape[1:])
    except (AttributeError, IndexError, ValueError, TypeError):
        raise CnntrainError(
            "the model is not built, so its layer sizes are unknown",
            hint="give the model an input shape (model.input_shape in the spec) "
                 "or call it on a batch before describing it") from None
    image = input_shape[:-1]
    rf = [[Fraction(1), Fraction(1)] for _ in image] if image else "whole"
    rows: list[LayerRow] = []
    previous = input_shape
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        kind = _kind(layer)
        in_shape, out_shape = _layer_shapes(layer, previous)
        try:
            params = int(layer.count_params())
        except ValueError:  # an unbuilt sub-layer
            params = 0
        trainable = int(sum(math.prod(w.shape) for w in layer.trainable_weights))
        formula = kernel = stride = padding = size = ""
        macs = 0
        if in_shape is not None and out_shape is not None:
            if kind in _WINDOWED:
                formula, kernel, stride, padding, size, macs = _windowed(layer, kind, in_shape, out_shape, params)
            elif kind == "dense":
                units, d_in = out_shape[-1], in_shape[-1]
                if (d_in + layer.use_bias) * units == params:
                    formula = (f"({d_in} + 1) x {units} = {params:,}" if layer.use_bias
                               else f"{d_in} x {units} = {params:,} (no bias)")
                macs = math.prod(out_shape[:-1]) * d_in * units
            elif kind == "bn":
                channels = math.prod(in_shape[a] for a in _bn_axes(layer, in_shape))
                if channels and params % channels == 0:
                    formula = f"{params // channels} x {channels} = {params:,} ({trainable:,} trainable)"
            elif type(layer).__name__ == "Functional":   # a nested model: a backbone
                macs = sum(r.macs for r in describe(layer))
                formula = f"{len(layer.layers)} layers: {trainable:,} trainable, {params - trainable:,} frozen"
            else:
                size = _reshaping_size(layer, kind, in_shape, out_shape)
        rf = _update_rf(rf, layer, kind, in_shape, out_shape)
        rows.append(LayerRow(
            name=layer.name, type=type(layer).__name__,
            output_shape=tuple(out_shape) if out_shape is not None else (),
            params=params, trainable=trainable, formula=formula if params else "",
            kernel=kernel, stride=stride, padding=padding, size_arithmetic=size,
            receptive_field=_rf_value(rf), macs=int(macs), receptive_field_text=_rf_text(rf, image)))
        previous = out_shape
    return rows


def _bn_axes(layer, in_shape) -> list[int]:
    axis = getattr(layer, "axis", -1)
    axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    # layer.axis counts the batch dimension when positive
    return [(a - 1) if a > 0 else len(in_shape) + a for a in axes]


def totals(rows: list[LayerRow], *, train_images: int | None = None) -> dict:
    """Parameter totals, MACs per image, and the training cost of one epoch.

    One multiply-accumulate is 2 floating-point operations (a multiply and an
    add). Training an image costs about 3x its forward pass: the forward pass,
    then in the backward pass one gradient with respect to the layer's input and
    one with respect to its weights, each as large as the forward pass. So
    FLOPs per epoch ~ 3 x 2 x MACs x N = 6 x MACs x N (the usual convention).
    """
    params = sum(r.params for r in rows)
    trainable = sum(r.trainable for r in rows)
    macs = sum(r.macs for r in rows)
    return {
        "params": params,
        "trainable": trainable,
        "non_trainable": params - trainable,
        "macs_per_image": macs,
        "train_flops_per_epoch": 6 * macs * train_images if train_images else None,
    }


def warnings(model, rows: list[LayerRow]) -> list[str]:
    """The chapter's pitfalls, as sentences: a Dense layer holding over half the
    parameters, a map shrunk to nothing, pooling a 1x1 map, a stride larger than
    its window (pixels skipped). Never raises on an odd model or odd rows."""
    out: list[str] = []
    total = sum(r.params for r in rows)
    layers = {layer.name: layer for layer in getattr(model, "layers", [])}
    previous = None
    for row in rows:
        layer = layers.get(row.name)
        kind = _kind(layer) if layer is not None else "other"
        if row.type == "Dense" and total and row.params > 0.5 * total:
            try:
                features = f" from {int(layer.input.shape[-1]):,} input features"
            except (AttributeError, ValueError, TypeError):
                features = ""
            out.append(
                f"{row.name} (Dense) holds {row.params:,} of the model's {total:,} parameters "
                f"({100 * row.params / total:.1f}%){features}: add Conv2D/MaxPooling2D stages "
                f"before Flatten, or use GlobalAveragePooling2D instead of Flatten, to shrink it")
        if any(isinstance(v, int) and v <= 0 for v in row.output_shape):
            out.append(f"{row.name} ({row.type}) has output shape {row.output_shape}: the map shrank "
                       f"to nothing; use padding='same', smaller kernels/strides or fewer pooling layers")
        sp = _spatial(previous, layer) if previous else ()
        if kind == "pool" and sp and all(v == 1 for v in sp):
            out.append(f"{row.name} ({row.type}) pools a {_x(sp)} map: there is nothing left "
                       f"to pool; remove it or pool less earlier")
        if kind in ("conv", "depthwise", "separable", "pool") and sp:
            try:
                k, s, d = _window(layer, kind, len(sp))
            except (AttributeError, TypeError):
                k, s, d = (), (), ()
            keff = [dd * (kk - 1) + 1 for kk, dd in zip(k, d)]
            if any(ss > kk for ss, kk in zip(s, keff)):
                ss, kk = max(zip(s, keff), key=lambda p: p[0] - p[1])
                out.append(f"{row.name} ({row.type}): stride {_x(s)} is larger than its "
                           f"{_x(keff)} window, so {ss - kk} of every {ss} rows/columns "
                           f"{'is' if ss - kk == 1 else 'are'} never looked at (skipped pixels); "
                           f"use a stride no larger than the kernel")
        previous = row.output_shape or None
    return out
