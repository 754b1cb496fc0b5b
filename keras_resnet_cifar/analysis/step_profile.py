"""Where a training step's time goes: steps recorded with TensorFlow's profiler, by op category.

`record` writes an XSpace file (TensorBoard's profile plugin opens it too); `summarize`
reads it with the protocol buffer TensorFlow ships. The command is scripts/profile_step.py."""

from __future__ import annotations

import bisect
import os
import re
from pathlib import Path
from typing import Any

# Op type -> category, first match wins. The optimizer is recognised by its name
# scope first (ReferenceSGD's update is plain Mul/Sub/Assign ops).
CATEGORIES = (
    ("conv2d_backward", re.compile(r"Conv2DBackprop")),
    ("conv2d_forward", re.compile(r"Conv2D")),
    ("batch_norm", re.compile(r"BatchNorm")),
    ("optimizer", re.compile(r"ResourceApply|Assign\w*VariableOp")),
    ("dense_and_loss", re.compile(r"MatMul|BiasAdd|Softmax|CrossEntropy")),
    ("elementwise", re.compile(r"Relu|Add|Sub|Mul|Div|Cast|Square|Sqrt|Maximum|Minimum|"
                               r"Select|Neg|Pad|Slice|Tile|BroadcastTo|Sum|Mean|Prod")),
)
OPTIMIZER_SCOPE = re.compile(r"(^|/)(reference_sgd|optimizer|SGD)[^/]*/", re.IGNORECASE)
_OP = re.compile(r"^[^:]+:(\w+)$")  # "scope/name:OpType"; "Executor::Process" is no op
_STEP = re.compile(r"step_on_(iterator|data)")  # Keras' train function, on the caller thread


def record(model, dataset, *, steps: int, logdir: str | os.PathLike) -> Path:
    """Profiles `steps` steps of `model.fit`; returns the .xplane.pb. Warm the model up
    first, or its tracing is recorded too."""
    import tensorflow as tf

    before = set(Path(logdir).glob("plugins/profile/*/*.xplane.pb"))
    tf.profiler.experimental.start(os.fspath(logdir))
    try:
        model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)
    finally:
        tf.profiler.experimental.stop()
    written = set(Path(logdir).glob("plugins/profile/*/*.xplane.pb")) - before
    return max(written, key=lambda p: p.stat().st_mtime)


def category(name: str) -> str | None:
    """The category of an op event name ("scope/op:Type"), None for no op."""
    match = _OP.match(name)
    if not match:
        return None
    if OPTIMIZER_SCOPE.search(name):
        return "optimizer"
    return next((cat for cat, pattern in CATEGORIES if pattern.search(match.group(1))), "other")


def summarize(xplane: str | os.PathLike, steps_per_execution: int = 1) -> dict[str, Any]:
    """Per step: {"steps", "wall_ms", "outside_ops_ms", "categories": {category: ms},
    "top_ops": [[op type, ms], ...] (the 10 longest)}.

    Wall time is that of Keras' train-function calls on the calling thread but the first
    (which waits for the new iterator's first batch). An op's time is its span on the
    executor thread (its intra-op work inside); ops overlap, so categories may add up to
    more than the wall time. outside_ops is the wall time with no op running and no wait
    for data (IteratorGetNext, the input_pipeline category): framework overhead and idle."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace.FromString(Path(xplane).read_bytes())
    host = next(p for p in space.planes if p.name == "/host:CPU")
    steps_spans, ops, waits = [], [], []
    for line in host.lines:
        base = line.timestamp_ns * 1000
        for event in line.events:
            name = host.event_metadata[event.metadata_id].name
            span = (base + event.offset_ps, base + event.offset_ps + event.duration_ps)
            if name.startswith("IteratorGetNext"):
                waits.append(span)
            elif line.name.startswith("tf_data"):
                continue  # the pipeline's own threads, working beside the step
            elif _STEP.search(name) and ":" not in name:
                steps_spans.append(span)
            elif (cat := category(name)) is not None:
                ops.append((span, cat, _OP.match(name).group(1)))
    steps_spans = _outermost(steps_spans)[1:]
    if not steps_spans:
        raise ValueError(f"{xplane} holds fewer than two train-function calls")
    steps = len(steps_spans) * steps_per_execution
    starts = [s for s, _ in steps_spans]

    def in_step(span) -> bool:
        i = bisect.bisect_right(starts, span[0]) - 1
        return i >= 0 and span[1] <= steps_spans[i][1]

    ops = [op for op in ops if in_step(op[0])]
    waits = [span for span in waits if in_step(span)]
    ms = 1e-9 / steps  # picoseconds in total -> milliseconds per step
    wall = sum(e - s for s, e in steps_spans)
    busy = sum(e - s for s, e in _outermost([op[0] for op in ops] + waits, merge=True))
    categories: dict[str, float] = {}
    by_type: dict[str, float] = {}
    for (s, e), cat, op_type in ops:
        categories[cat] = categories.get(cat, 0.0) + (e - s) * ms
        by_type[op_type] = by_type.get(op_type, 0.0) + (e - s) * ms
    categories["input_pipeline"] = sum(e - s for s, e in waits) * ms
    return {"steps": steps, "wall_ms": wall * ms, "outside_ops_ms": (wall - busy) * ms,
            "categories": dict(sorted(categories.items(), key=lambda kv: -kv[1])),
            "top_ops": sorted(([t, v] for t, v in by_type.items()), key=lambda kv: -kv[1])[:10]}


def _outermost(spans, merge: bool = False) -> list[tuple[int, int]]:
    """Sorted spans without those nested in another (`merge`: overlapping ones joined)."""
    out: list[list[int]] = []
    for s, e in sorted(spans):
        if out and s < out[-1][1]:
            if merge:
                out[-1][1] = max(out[-1][1], e)
            continue
        out.append([s, e])
    return [(s, e) for s, e in out]
