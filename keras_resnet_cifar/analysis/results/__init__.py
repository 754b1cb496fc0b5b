"""The results of a study, from run directories: what the report command writes (no
TensorFlow). runs (loading, per-run numbers) -> recipes (one recipe only), stats (the
verdict rule), evidence -> findings (every claim, a verdict naming its budget), tables (with
each run's provenance), figures, reference (beside the reference PyTorch trainer),
full_recipe, markdown (report.md) -> build (report(), write()).

A study report: report.md; table1.md/.csv (per model: mean ± std over seeds, n); runs.csv
(per run); cost.csv (time, load); provenance.csv (CPU, versions, commit, data path);
findings.json; reference.json (with reference runs); figures/*.png/.svg. A full-recipe
report (one seed per network at the default 200 epochs; chosen by mode "auto"): report.md,
table1.csv (beside the published figures), status.csv, provenance.csv, findings.json,
figures/table1_curves.png/.svg.
"""
