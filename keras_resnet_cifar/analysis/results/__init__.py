r"""The study's report: Table 1, the findings with verdicts, the figures, report.md.

    python -m keras_resnet_cifar.report runs/study/runs/* --out=runs/study/report
    python -m keras_resnet_cifar.report docs/study/runs/* \
        --reference_runs=docs/study/reference --out=docs/study

One module per part, each usable alone:

* :mod:`~keras_resnet_cifar.analysis.results.runs`: loading run directories (through
  :mod:`keras_resnet_cifar.run_files`), the per-run numbers, the accuracy levels;
* :mod:`~keras_resnet_cifar.analysis.results.recipes`: their recipe (runs of different
  recipes are never pooled);
* :mod:`~keras_resnet_cifar.analysis.results.stats`: the verdict rule (Welch's t-test over
  seeds, or a one-sample t-test of a per-seed quantity; Holm-Bonferroni over the family of
  tested claims; adjusted p < 0.05 with the claimed sign);
* :mod:`~keras_resnet_cifar.analysis.results.tables`: Table 1 (mean ± std over seeds, n),
  the study's cost, as Markdown and CSV;
* :mod:`~keras_resnet_cifar.analysis.results.findings`: every claim of the reproduction
  paper and He et al.'s, each with a verdict over seeds that names its budget (claims
  about the end of the full schedule: "not testable at this budget" on shorter runs),
  made of :mod:`~keras_resnet_cifar.analysis.results.evidence` (one measure compared over
  seeds);
* :mod:`~keras_resnet_cifar.analysis.results.provenance`: what each run ran on and from
  (CPU, load, versions, code commit, data path), per run;
* :mod:`~keras_resnet_cifar.analysis.results.full_recipe`: the report of full-recipe
  Table 1 runs (one seed per network, finished or in progress) beside the published
  figures;
* :mod:`~keras_resnet_cifar.analysis.results.reference`: the project's runs beside the
  reference PyTorch trainer's;
* :mod:`~keras_resnet_cifar.analysis.results.figures`: the figures (every seed faintly, the
  mean ± std), drawn by :mod:`keras_resnet_cifar.analysis.plots`;
* :mod:`~keras_resnet_cifar.analysis.results.markdown`: report.md's text.

The report needs no TensorFlow (model names are read by :mod:`keras_resnet_cifar.models.arch`,
not :mod:`keras_resnet_cifar.models.networks`): importing the package stays quick and quiet.

:func:`~keras_resnet_cifar.analysis.results.build.build` returns every file's content;
:func:`~keras_resnet_cifar.analysis.results.build.write_report` writes them into a folder:

    report.md            the report: setup, hardware, commands, table, findings, figures
    table1.md/.csv       one row per model: mean (± std over seeds) and n
    runs.csv             one row per run
    cost.csv             per run: training time, load average
    provenance.csv       per run: CPU, cores, load, versions, code commit, data path
    findings.json        every finding with its numbers and verdict
    reference.json       the reference comparison (with reference runs)
    figures/*.png/.svg   error curves inside the runs (He et al. Fig. 6 layout), per depth,
                         confusion matrices, layer stats, the signed early/late gradient
                         ratio, the reference comparison

For full-recipe runs (``--mode=full_recipe``, chosen by ``auto`` when every run has the
default 200-epoch recipe and one seed per network) the folder holds report.md,
table1.csv (ours beside the published figures), status.csv (where each run stands),
provenance.csv, findings.json and figures/table1_curves.png/.svg.
"""
