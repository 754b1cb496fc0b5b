"""The benchmark's text table, from a report made by hand (speed.run makes them in
tests/test_benchmark.py)."""

from keras_resnet_cifar.analysis import speed_table

MACHINE = {"cpu": "X", "cpu_cores": 2, "gpus": [], "python": "3.11", "tensorflow": "2.21",
           "keras": "3", "onednn": "1", "intra_op_threads": 0, "inter_op_threads": 0,
           "bfloat16_cpu_flags": ["avx512_bf16"], "load_average": [2.0, 2.0, 2.0],
           "load_average_after": [2.1, 2.0, 2.0], "date": "2026-12-07T05:00:00+0000"}
SETTINGS = {"batch_size": 128, "steps": 20, "repeats": 2,
            "variants": ["float32", "mixed_bfloat16"],
            "steps_per_execution": 1, "data": "synthetic", "num_threads": 0,
            "inference_runs": 100}


def _stats(median):
    return {"median": median, "min": median - 1, "max": median + 1, "spread_pct": 5.0}


def test_every_figure_has_its_row_and_the_peer_ratios_their_summary():
    ratio = {"pairs": [1.5, 2.5], "median": 2.0}
    report = {
        "machine": MACHINE, "settings": SETTINGS,
        "training": {"resnet8 float32": {"params": 75_290, "images_per_sec": _stats(100)},
                     "resnet8 mixed_bfloat16": {
                         "params": 75_290, "images_per_sec": _stats(50),
                         "ratio_to_first": {"of": "float32", "pairs": [0.5], "median": 0.5},
                         "peer": {"channels_last": {"precision": "mixed_bfloat16",
                                                    "images_per_sec": _stats(25),
                                                    "ratio": ratio}}}},
        "evaluation": {"resnet8 float32": {"images_per_sec": _stats(300)}},
        "pipeline": {"images_per_sec": _stats(5000), "times_fastest_training": 50.0},
        "inference": {"skipped": "none given"},
    }
    table = speed_table.format_table(report)
    for text in ("bfloat16 CPU flags: avx512_bf16", "variants in turn: float32, mixed_bfloat16",
                 "train resnet8 float32 (img/s, 75,290 params)",
                 "ratio resnet8 mixed_bfloat16 / float32", "0.500   pairs: 0.500",
                 "peer  resnet8 mixed_bfloat16 (img/s, PyTorch, channels_last, bfloat16 "
                 "autocast)", "evaluate resnet8 float32 (img/s)",
                 "input pipeline / fastest training", "inference", "skipped: none given",
                 "median of A B pairs: resnet8 mixed_bfloat16 2.00x vs channels_last"):
        assert text in table, text
    assert "inference settings" not in table


def test_the_cpu_flags_say_unknown_or_none():
    assert "unknown" in speed_table._bf16(None)
    assert speed_table._bf16([]).startswith("none")
