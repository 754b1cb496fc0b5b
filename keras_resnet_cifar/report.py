r"""Run directories in, report.md, tables and figures out.

    python -m keras_resnet_cifar.report runs/study/runs/* --out=runs/study/report
    python -m keras_resnet_cifar.report docs/study/runs/* \
        --reference_runs=docs/study/reference --out=docs/study
    python -m keras_resnet_cifar.report runs/resnet20-seed0 runs/plain20-seed0 \
        runs/resnet56-seed0 runs/plain56-seed0 --out=report --mode=full_recipe
    python -m keras_resnet_cifar.report ~/table1/runs/*-seed0 --copy_runs --out=docs/table1

--reference_runs' glob patterns are expanded here (no shell expands a pattern after "=").
A run directory needs only its small files: a committed copy without models reports as
well as the original. --copy_runs makes that copy (<out>/runs/<run name>/, as the study
publishes its runs) beside the report, so the report folder can be committed with what it
was built from, also while the runs are still training elsewhere.
"""

from __future__ import annotations

import sys

from absl import flags, logging

from keras_resnet_cifar import cli, fileio, run_files
from keras_resnet_cifar.errors import UserError


def define_flags() -> None:
    flags.DEFINE_string("out", None, "Folder for report.md, tables and figures.")
    flags.DEFINE_list("accuracy_levels", [], "Accuracies (e.g. 0.5,0.8) whose first epoch Table "
                      "1 gives; default: chosen so that every run that learned reaches them.")
    flags.DEFINE_enum("mode", "auto", ["auto", "study", "full_recipe"], "study: several seeds, "
                      "verdicts over them; full_recipe: Table 1 at the default 200-epoch recipe, "
                      "one seed per network, finished or still running, beside the published "
                      "figures; auto: full_recipe when every run has the default recipe's epochs "
                      "and one seed per network.")
    flags.DEFINE_list("reference_runs", [], "Runs of the reference PyTorch trainer (scripts/train_"
                      "reference_pytorch.py) to set beside the study's: run directories, folders "
                      "of them, or glob patterns, e.g. 'docs/study/reference/*'.")
    flags.DEFINE_list("variant_runs", [], "Runs whose recipe differs from the study runs' in one "
                      "field (e.g. --mixed_precision=mixed_bfloat16), set beside them network by "
                      "network and paired by seed; given as --reference_runs is.")
    flags.DEFINE_bool("copy_runs", False, "Copy each run's small files (config, history, "
                      "metrics, evaluation; never models or checkpoints) into <out>/runs/<run "
                      "name>/, beside the report, which they rebuild.")


def main(argv):
    FLAGS = flags.FLAGS
    if len(argv) < 2:
        raise UserError("Give the run directories to report on, e.g. runs/study/runs/*.")
    from keras_resnet_cifar.analysis.results import build, markdown, runs

    fileio.check_can_make_dir(FLAGS.out, what=f"--out {FLAGS.out}")
    options = dict(
        reference_dirs=runs.expand_run_paths(FLAGS.reference_runs) if FLAGS.reference_runs
        else [], variant_dirs=runs.expand_run_paths(FLAGS.variant_runs) if FLAGS.variant_runs
        else [], accuracy_levels=runs.parse_levels(FLAGS.accuracy_levels), mode=FLAGS.mode,
        command=markdown.portable_command(["python", "-m", "keras_resnet_cifar.report",
                                           *sys.argv[1:]]))
    made = build.report(argv[1:], **options)  # every refusal comes before anything is copied
    if FLAGS.copy_runs:  # the copies give the same report: they hold all a report reads
        run_files.publish_runs(argv[1:], FLAGS.out)
    logging.info("wrote %s", build.write(made, FLAGS.out))


if __name__ == "__main__":
    define_flags()
    cli.run(main, takes_files=True, required={"out": "the folder the report goes to"})
