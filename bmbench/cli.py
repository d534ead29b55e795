"""The ``bmbench`` command line: each command is a thin call into the Python API."""

from __future__ import annotations

import os
import sys

import click

from .core.version import __version__
from .core.errors import BmbenchError, one_line as _one_line
from .core.progress import configure_output as _setup
from .core.tf_log import ENV_VAR


class _Group(click.Group):
    """Turns every :class:`BmbenchError` into one ``Error:`` line and exit code 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BmbenchError as exc:
            click.echo(f"Error: {_one_line(str(exc))}", err=True)
            sys.exit(2)
        except OSError as exc:  # a full disk, a read-only folder: one line, nothing half-written kept
            from .core.oserrors import describe

            click.echo(f"Error: {_one_line(describe(exc))}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("Interrupted: nothing was stored for the unfinished run.", err=True)
            sys.exit(130)

    def format_commands(self, ctx, formatter):
        """Each command with the first sentence of its help, wrapped, never cut with "...". """
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, _first_sentence(cmd.short_help or cmd.help or "")))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _first_sentence(text: str) -> str:
    import re

    text = " ".join(text.split())
    for m in re.finditer(r"\. (?=[A-Z`(])", text):
        if not re.search(r"\b(vs|e\.g|i\.e|etc)$", text[:m.start()]):
            return text[:m.start() + 1]
    return text


results_option = click.option(
    "--results-dir", type=click.Path(file_okay=False), default=None,
    help="Results store (default: $BMBENCH_RESULTS or ./results).")
quiet_option = click.option("--quiet", "-q", is_flag=True, help="Only warnings and errors.")
set_option = click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
                          help="Override a recipe value, e.g. --set dataset.image_size=32.")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="bmbench")
@click.option("--verbose", "-v", is_flag=True,
              help="Also show TensorFlow's native start-up log (as BMBENCH_TF_LOG=1 does).")
def main(verbose):
    """Benchmark methods for classifying blood and bone-marrow cell images."""
    if verbose:
        os.environ[ENV_VAR] = "1"


def tracking_options(f):
    f = click.option("--experiment", default=None, metavar="NAME",
                     help="MLflow experiment (default: $MLFLOW_EXPERIMENT_NAME, else bmbench).")(f)
    return click.option("--tracking-uri", default=None, metavar="URI",
                        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else MLflow's own).")(f)


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@set_option
@click.option("--repeats", type=click.IntRange(1, 1000), default=None,
              help="Run with this many seeds (seed, seed+1, ...) on the same split.")
@results_option
@quiet_option
@click.option("--track", type=click.Choice(["mlflow"]), default=None,
              help="Also log each stored run to this experiment tracker; if it fails: one warning, the run is kept.")
@tracking_options
@click.option("--metrics-out", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Also copy the run's metrics.json to FILE, a fixed path for DVC (one run only).")
def run(recipe, overrides, repeats, results_dir, quiet, track, tracking_uri, experiment, metrics_out):
    """Train and score RECIPE (a YAML file); store the run under results/runs/."""
    from .runs.runner import run_repeats
    from .views.notebook import run_text
    from .runs.store import load_record

    _setup(quiet)
    if track or metrics_out:
        from .views.tracker import check_run_outputs

        recipe, overrides = check_run_outputs(recipe, tuple(overrides), repeats, track, metrics_out), ()
    for folder in run_repeats(recipe, results_dir, tuple(overrides), repeats):
        click.echo(run_text(load_record(folder)))
        if metrics_out:
            from .views.tracker import copy_metrics

            click.echo(f"wrote {copy_metrics(folder, metrics_out)}", err=True)
        if track:
            from .views.tracker import track_run

            _echo_sent([track_run(folder, tracking_uri, experiment)], tracking_uri)


def _echo_sent(sent, tracking_uri) -> None:
    from .views.tracker import run_url

    for s in sent:
        if s is not None:
            where = run_url(tracking_uri, s) or f"run {s.mlflow_run_id}"
            click.echo(f"{s.run_id}: {'sent to' if s.new else 'already in'} MLflow, {where}")


@main.group()
def export():
    """Send stored runs to an experiment tracker (see the docs' Experiment trackers page)."""


@export.command("mlflow")
@click.argument("runs", nargs=-1)
@tracking_options
@results_option
def export_mlflow(runs, tracking_uri, experiment, results_dir):
    """Send stored RUNS (folders, ids, recipe names or latest; default: every run) to MLflow.

    Each run once: a run already sent (found by its bmbench.run_id tag) is not sent again."""
    from .views.tracker import send_runs, stored_runs

    _setup(False)
    folders = stored_runs(results_dir, tuple(runs))
    if not folders:
        raise BmbenchError("no runs stored yet; run `bmbench run RECIPE` first, or give --results-dir")
    _echo_sent(send_runs(folders, tracking_uri, experiment), tracking_uri)


@main.command()
@results_option
@click.option("--metric", default="macro_f1", show_default=True, help="Metric to rank by.")
@click.option("--dataset", default=None, help="Only runs on this data set kind.")
@click.option("--recipe", default=None, help="Only runs of this recipe name.")
@click.option("--family", default=None, help="Only runs of this model family.")
@click.option("--best-per-recipe", is_flag=True, help="Keep the best run of each recipe.")
@click.option("--fair", is_flag=True, help="Rank only runs given the same tuning budget together "
              "(one table per split and budget: 'default' or 'tuned N trials').")
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "csv", "json", "html"]),
              default="table", show_default=True,
              help="html: a page with a bar chart (interval whiskers) and the table per split.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write to a file.")
@click.option("--wide", is_flag=True, help="table: every column (the default is a compact view fitted to the terminal).")
@click.option("--per-class", is_flag=True, help="table: per-class F1/recall of each run.")
@click.option("--columns", default=None, metavar="A,B,...",
              help="table: these columns, e.g. rank,id,recipe,macro_f1,accuracy,fit_s.")
@click.option("--no-index", is_flag=True,
              help="Read every run folder and redo the paired tests instead of using (and updating) the "
                   "store's index.sqlite.")
def leaderboard(results_dir, metric, dataset, recipe, family, best_per_recipe, fair, fmt, out, wide, per_class,
                columns, no_index):
    """Rank stored runs; one table per data set and test split, the metric with its 95% CI,
    runs not significantly different from the leader marked n.s."""
    from .views.leaderboard import TableView, render, store_boards

    _setup(False)
    store, boards, empty = store_boards(results_dir, metric, dataset, recipe, family, best_per_recipe, fair,
                                        not no_index)
    if empty is not None and fmt == "table":
        _emit(empty, out)
        return
    view = TableView(tuple(c.strip() for c in columns.split(",") if c.strip()) if columns else None,
                     wide, per_class, width=None if out is None else 10_000)
    _emit(render(boards, fmt, view, _report_links(store, out)), out)


@main.command()
@click.argument("run_a", metavar="RUN_A")
@click.argument("run_b", metavar="RUN_B")
@click.option("--metric", default="macro_f1", show_default=True,
              help="Metric whose paired difference is bootstrapped.")
@click.option("--resamples", type=click.IntRange(100, 100_000), default=1000, show_default=True,
              help="Bootstrap resamples.")
@click.option("--seed", type=click.IntRange(0, 2 ** 32 - 1), default=0, show_default=True,
              help="Bootstrap seed (0 to 2**32-1).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@click.option("--dataset", default=None, metavar="KIND",
              help="Choose RUN_A and RUN_B among the runs on this data set kind (a recipe name means its newest run).")
@results_option
def compare(run_a, run_b, metric, resamples, seed, fmt, dataset, results_dir):
    """Paired tests of two runs on the same test images: exact McNemar and a paired
    bootstrap CI of the METRIC difference (RUN = a run folder, an id prefix, or latest)."""
    import json

    from .views.compare import compare_refs, format_comparison

    _setup(False)
    result = compare_refs(run_a, run_b, metric, resamples, seed, dataset, results_dir, "--dataset")
    click.echo(json.dumps(result, indent=2) if fmt == "json" else format_comparison(result),
               nl=fmt == "json")


@main.command()
@click.argument("run_ref", metavar="RUN")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="HTML file to write (default: RUN/report.html).")
@click.option("--mistakes", type=click.IntRange(0, 200), default=12, show_default=True,
              help="Most confident mistakes shown as thumbnails.")
@click.option("--explain/--no-explain", default=True, show_default=True,
              help="Add Grad-CAM (cnn, transfer) or TreeSHAP (classical, hybrid) explanations per "
                   "class; loads the model and reads test images from the data set root.")
@click.option("--dataset", default=None, metavar="KIND",
              help="Choose RUN among the runs on this data set kind (a recipe name means its newest run).")
@results_option
def report(run_ref, out, mistakes, explain, dataset, results_dir):
    """Write one self-contained HTML report of RUN (a run folder, an id prefix, or latest);
    its figures are also saved as PNG files in RUN/figures/."""
    from .views.report import write_report
    from .config.locations import results_dir as resolve
    from .runs.store import resolve_run

    _setup(False)
    folder = resolve_run(resolve(results_dir), run_ref, dataset, "--dataset")
    path = write_report(folder, out, mistakes, explain)
    click.echo(f"wrote {path} (figures in {folder / 'figures'})")


def _report_links(store, out: str | None):
    """run id -> the path of its report relative to the page (``--out``'s folder, else the
    working folder)."""
    import os
    from pathlib import Path

    base = Path(out).resolve().parent if out else Path.cwd()

    def href(run_id: str) -> str:
        return Path(os.path.relpath(Path(store) / "runs" / run_id / "report.html", base)).as_posix()
    return href


def _emit(text: str, out: str | None) -> None:
    if out is None:
        click.echo(text, nl=False)
        return
    from pathlib import Path
    from .core.atomic import write_text

    try:
        write_text(Path(out), text)
    except OSError as exc:
        raise BmbenchError(f"{out}: cannot write ({exc.strerror})") from None
    click.echo(f"wrote {out}", err=True)


@main.group(invoke_without_command=True)
@click.option("--format", "fmt", type=click.Choice(["table", "markdown"]), default="table",
              show_default=True)
@click.pass_context
def datasets(ctx, fmt):
    """List the known data set kinds (or check a folder: `datasets check`)."""
    if ctx.invoked_subcommand is None:
        from .data.describe import describe_kinds

        click.echo(describe_kinds(fmt))


@main.command()
@click.option("--format", "fmt", type=click.Choice(["table", "markdown"]), default="table",
              show_default=True)
def plugins(fmt):
    """List every plug-in point, its entry-point group and entries (bmbench's and plug-ins')."""
    from .views.plugins import describe_plugins

    click.echo(describe_plugins(fmt))


@datasets.command("check")
@click.argument("root", type=click.Path())
@click.option("--kind", required=True, help="Data set kind (see `bmbench datasets`).")
@click.option("--ids", default=None, help="Images ID file (kind matek_bm4).")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
              help="A kind-specific option, e.g. --option labels=fine.")
@click.option("--decode/--no-decode", default=True, show_default=True,
              help="Decode every image to find unreadable files.")
@click.option("--scale-reference", default=None, metavar="KIND:ROOT",
              help="Estimate the pixel scale relative to this data set from median nucleus sizes.")
@click.option("--reference-microns-per-pixel", type=float, default=None,
              help="The reference's pixel size, µm/px (default: its kind's documented one).")
@click.option("--scale-sample", type=click.IntRange(1, 10_000), default=40, show_default=True,
              help="Images per class segmented for the scale estimate.")
@click.option("--recipe", "recipe_path", type=click.Path(dir_okay=False), default=None,
              help="Check the split settings of this recipe (default: the default split).")
@click.option("--split", "split_options", multiple=True, metavar="KEY=VALUE",
              help="A split setting, e.g. --split folds=5 (on top of --recipe's).")
@quiet_option
def datasets_check(root, kind, ids, options, decode, scale_reference, reference_microns_per_pixel,
                   scale_sample, recipe_path, split_options, quiet):
    """Count images per class in ROOT, check that every class has the images the split needs
    and list unreadable files; with --scale-reference, estimate its pixel size relative to
    another data set."""
    from .data.check import check_dataset, check_split

    _setup(quiet)
    spec = _check_split_spec(recipe_path, split_options)
    report = check_dataset(root, kind, ids, options, decode)
    check_split(report, spec)
    click.echo(report.text())
    if scale_reference:
        click.echo(_scale_text(report.table, scale_reference, reference_microns_per_pixel, scale_sample))
    if report.unreadable or (report.split_fails and (recipe_path or split_options)):
        sys.exit(1)  # the default split only informs: the set may be meant for evaluation only


def _check_split_spec(recipe_path, split_options):
    import dataclasses

    from .config.recipe import load_recipe, split_spec
    from .data.check import key_values

    raw = dataclasses.asdict(load_recipe(recipe_path).split) if recipe_path else {}
    raw.update(key_values(split_options, "--split"))
    return split_spec(raw, "--split" if split_options else (recipe_path or "default split"))


def _scale_text(table, reference: str, reference_mpp, per_class: int) -> str:
    from .data.check import check_dataset
    from .data.registry import get_kind
    from .features.scale import estimate_scale, nucleus_sizes

    ref_kind, sep, ref_root = reference.partition(":")
    if not sep or not ref_root:
        raise BmbenchError(f"--scale-reference {reference!r}: expected KIND:ROOT, e.g. pbc:data/PBC")
    ref = check_dataset(ref_root, ref_kind, decode=False).table
    here, there = nucleus_sizes(table, per_class), nucleus_sizes(ref, per_class)
    estimate = estimate_scale(here, there)
    mpp = reference_mpp if reference_mpp is not None else get_kind(ref.kind).microns_per_pixel
    return estimate.text(mpp)


@main.command()
@click.argument("source", type=click.Path())
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Table to write: .csv or .parquet (data dictionary beside it).")
@click.option("--kind", default="folder", show_default=True,
              help="Data set kind when SOURCE is a folder.")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
              help="Kind-specific option when SOURCE is a folder.")
@click.option("--families", default=None, help="Comma-separated feature families (default: all).")
@click.option("--segmentation", default="otsu", show_default=True, help="Segmentation method.")
@click.option("--feature-size", type=int, default=None, help="Resize the longer side first, px.")
@set_option
@click.option("--jobs", "-j", type=int, default=1, show_default=True, help="Worker processes.")
@click.option("--overlays", type=click.Path(file_okay=False), default=None,
              help="Also write segmentation overlays (PNG) into this folder.")
@click.option("--per-class", type=int, default=5, show_default=True,
              help="Overlays per class.")
@click.option("--backend", type=click.Choice(["local", "dask"]), default="local", show_default=True,
              help="dask: extract shards of the images on the cluster at --scheduler.")
@click.option("--scheduler", default=None, metavar="tcp://HOST:PORT",
              help="dask scheduler address (with --backend dask).")
@click.option("--backbone", default=None, metavar="NAME",
              help="Export embeddings of this keras.applications backbone instead (cached).")
@click.option("--weights", default=None,
              help="With --backbone: imagenet, none or a weights file (default: the recipe's, or imagenet).")
@click.option("--image-size", type=int, default=None,
              help="With --backbone: input side, px (default: the recipe's, or the backbone's ImageNet size).")
@results_option
@quiet_option
def features(source, out, kind, options, families, segmentation, feature_size, overrides, jobs,
             overlays, per_class, backend, scheduler, backbone, weights, image_size, results_dir, quiet):
    """Export handcrafted features (or, with --backbone, backbone embeddings) of every image
    in SOURCE (a recipe or a data folder)."""
    from .data.check import key_values
    from .views.export_features import export_features, feature_source, overlay_folders, write_overlays

    _setup(quiet)
    if backbone:
        from .views.export_embeddings import embedding_job, export_embeddings

        job = embedding_job(source, backbone, weights, image_size, kind, key_values(options, "--option"), overrides,
                            results_dir, jobs)
        path = export_embeddings(job, out)
        click.echo(f"wrote {path} ({len(job.table)} images) and {path.with_suffix('.features.json')}")
        return
    if backend == "local" and scheduler:
        raise BmbenchError("--scheduler is for --backend dask")
    src = feature_source(source, kind, key_values(options, "--option"), families.split(",") if families else None,
                         segmentation, feature_size, overrides, results_dir)
    if overlays:
        overlay_folders(src, overlays)  # a label that cannot be a folder stops before the export
    if backend == "dask":
        from .runs.backends import DaskBackend, DaskFeatureExtractor

        cluster = DaskBackend(scheduler)
        click.echo(cluster.describe(), err=True)
        try:
            path = export_features(src, out, jobs, extract=DaskFeatureExtractor(cluster.client))
        finally:
            cluster.close()
    else:
        path = export_features(src, out, jobs)
    click.echo(f"wrote {path} ({len(src.dataset)} images) and {path.with_suffix('.features.json')}")
    if overlays:
        n = write_overlays(src, overlays, per_class)
        click.echo(f"wrote {n} overlays into {overlays}")


@main.command()
@click.argument("source", type=click.Path())
@click.option("--kind", default="folder", show_default=True,
              help="Data set kind when SOURCE is a folder.")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
              help="Kind-specific option when SOURCE is a folder, e.g. --option test_set=TEST.")
@set_option
@click.option("--jobs", "-j", type=int, default=1, show_default=True, help="Worker processes.")
@click.option("--out", type=click.Path(), default=None,
              help="Folder for the report files (default: RESULTS/audits/<name>-<split>).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@click.option("--sheet", type=click.IntRange(0, 1000), default=24, show_default=True,
              help="Worst pairs shown on the contact sheet.")
@click.option("--fail-on-leak", is_flag=True, help="Exit with status 1 when the verdict is LEAK.")
@results_option
@quiet_option
def audit(source, kind, options, overrides, jobs, out, fmt, sheet, fail_on_leak, results_dir, quiet):
    """Leakage audit of SOURCE (a recipe, or a data folder of --kind): exact and near-duplicate
    images within the data set and across the split, label noise, patients on both sides, and
    a leak score (1-NN accuracy under the split vs. with near-duplicates kept together)."""
    import json
    from pathlib import Path

    from .audit import audit_source
    from .audit.report import render_text, to_dict, write_reports
    from .config.locations import results_dir as resolve
    from .core.atomic import check_writable
    from .data.check import key_values

    _setup(quiet)
    check_writable(out or resolve(results_dir) / "audits", "the audit report", folder=True)  # before any work
    result = audit_source(source, kind, key_values(options, "--option"), tuple(overrides), results_dir, jobs)
    folder = Path(out) if out else resolve(results_dir) / "audits" / f"{result.name}-{result.split.fingerprint[:8]}"
    write_reports(result, folder, sheet)
    if fmt == "json":
        click.echo(json.dumps(to_dict(result), indent=2))
    elif quiet:
        click.echo(result.verdict.line)
    else:
        click.echo(render_text(result), nl=False)
        from .audit.report import FILES

        click.echo(f"wrote {folder}/ ({', '.join(FILES.values())})")
    if fail_on_leak and result.verdict.level == "leak":
        sys.exit(1)


@main.command()
@click.argument("runs", metavar="RUN RUN...", nargs=-1, required=True)
@click.option("--method", type=click.Choice(["mean", "select", "stack"]), default="select", show_default=True,
              help="mean: plain average; select: greedy ensemble selection with replacement (Caruana 2004); "
                   "stack: logistic regression on the members' probabilities. Fitted on the validation "
                   "images only.")
@click.option("--name", default=None, help="Name of the stored ensemble run (default: ensemble_<method>).")
@click.option("--rounds", type=click.IntRange(1, 10_000), default=25, show_default=True,
              help="Greedy rounds of --method select (weights are multiples of 1/rounds).")
@results_option
@quiet_option
def ensemble(runs, method, name, rounds, results_dir, quiet):
    """Combine stored RUNs (same data set, split and classes) into a new stored run, its
    weights fitted on the members' validation probabilities; ranked by the leaderboard,
    predicted with bmbench predict."""
    from .runs.ensemble import build_ensemble
    from .runs.store import load_record
    from .views.notebook import headline

    _setup(quiet)
    record = load_record(build_ensemble(list(runs), method, name, results_dir, rounds))
    e = record.info["ensemble"]
    click.echo(headline(record))
    for member in e["members"]:
        click.echo(f"  {member['weight']:.3f}  {member['id']}  (validation macro_f1={member['validation_macro_f1']:.4f}, "
                   f"test macro_f1={member['test_macro_f1']:.4f})")


@main.command()
@click.argument("run_ref", metavar="RUN")
@click.argument("images", nargs=-1, required=True)
@click.option("--out", default="-", show_default=True, type=click.Path(dir_okay=False, allow_dash=True),
              help="CSV to write; - prints it on stdout.")
@click.option("--top-k", type=click.IntRange(1, 1000), default=3, show_default=True,
              help="Classes listed per image: the predicted one, then top2_..., topK_ columns.")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=256, show_default=True,
              help="Images predicted per step (bounds memory).")
@click.option("--microns-per-pixel", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Pixel size of IMAGES, µm/px, for runs that resample to one pixel size "
                   "(default: the training images').")
@click.option("--digits", type=click.IntRange(0, 17), default=6, show_default=True,
              help="Significant digits of the probabilities (0: every digit of the float64).")
@click.option("--explain", "explain_dir", type=click.Path(file_okay=False), default=None,
              help="Also write why, per image, into this folder: a heatmap overlay PNG (cnn, transfer) "
                   "or a feature-contributions CSV and a segmentation overlay (classical, hybrid).")
@click.option("--method", type=click.Choice(["gradcam", "gradcam++"]), default="gradcam", show_default=True,
              help="Heatmap method with --explain (cnn, transfer).")
@click.option("--adapt-on", "adapt_on", type=click.Path(exists=True, file_okay=False), default=None,
              help="Transductive: first adapt the model to the unlabelled images of this folder (labels "
                   "never read; e.g. the folder you predict); the CSV's last column says so.")
@click.option("--adapt-mode", type=click.Choice(["adabn", "standardize", "coral"]), default=None,
              help="Mode of --adapt-on (default: adabn for cnn and transfer, standardize for classical "
                   "and hybrid).")
@results_option
@quiet_option
def predict(run_ref, images, out, top_k, batch_size, microns_per_pixel, digits, explain_dir, method, adapt_on,
            adapt_mode, results_dir, quiet):
    """Predict IMAGES (files, folders, or a CSV with a path column) with a stored RUN
    (a run folder, an id prefix, or latest); the CSV goes to --out, or to stdout."""
    import shutil
    import tempfile

    from .runs.predict import NothingPredicted, expand_inputs, load_run, predict_to_csv
    from .core.progress import progress

    _setup(quiet)
    run = load_run(run_ref, results_dir)
    if microns_per_pixel is not None:
        run.set_pixel_size(microns_per_pixel)
    paths = expand_inputs(images)
    to_stdout = out == "-"
    if adapt_mode is not None and adapt_on is None:
        raise BmbenchError("--adapt-mode needs --adapt-on FOLDER (the unlabelled images to adapt to)")
    if adapt_on is not None:
        a = run.adapt(adapt_on, adapt_mode)
        click.echo(f"transductive: adapted with {a['mode']} to {a['n_images']} unlabelled images of {adapt_on}",
                   err=to_stdout)
    with tempfile.TemporaryDirectory(prefix="bmbench-predict-") as tmp:
        target = os.path.join(tmp, "predictions.csv") if to_stdout else out
        try:
            with progress(len(paths), "predicting") as bar:
                n, skipped = predict_to_csv(run, paths, target, top_k, batch_size, bar.update, explain_dir,
                                            method, digits)
        except NothingPredicted as exc:
            _echo_skipped(exc.skipped)
            raise
        if to_stdout:
            with open(target, newline="") as fh:
                shutil.copyfileobj(fh, sys.stdout)
    if explain_dir is not None:
        click.echo(f"wrote the explanations into {explain_dir}", err=to_stdout)
    _echo_skipped(skipped)
    where = "predicted" if to_stdout else f"wrote {out}:"
    click.echo(f"{where} {n} image(s)" + ("" if to_stdout else " predicted") + f", {len(skipped)} skipped",
               err=to_stdout)


def _echo_skipped(skipped: dict[str, str]) -> None:
    for path, reason in skipped.items():
        click.echo(f"skipped {path}: {reason.removeprefix(f'{path}: ')}", err=True)


@main.command()
@click.argument("source", required=False, metavar="ABLATION.yaml|RECIPE", type=click.Path(dir_okay=False))
@click.option("--vary", multiple=True, metavar="KEY.PATH=V1,V2,...",
              help="With a RECIPE: an axis and its values (comma-separated, each parsed as YAML: "
                   "model.features=[shape],[shape,color]). Repeatable.")
@click.option("--mode", type=click.Choice(["one_at_a_time", "grid"]), default=None,
              help="Vary each axis alone around the base (default) or run every combination.")
@click.option("--repeats", type=click.IntRange(1, 100), default=None,
              help="Runs per variant with training seeds base.seed+0..N-1 (default 1).")
@click.option("--metric", "metrics", multiple=True,
              help="Metric for the tables (repeatable; default macro_f1, balanced_accuracy, accuracy).")
@set_option
@click.option("--id", "ablation_id", default=None, help="Ablation id (default: the file's name, or "
              "<recipe name>-<hash of the --vary options>).")
@click.option("--backend", type=click.Choice(["local", "dask"]), default="local", show_default=True,
              help="local: this machine; dask: the cluster at --scheduler.")
@click.option("--jobs", "-j", type=int, default=1, show_default=True,
              help="local: runs at a time in worker processes, each with cores/jobs threads (-1: one per core).")
@click.option("--scheduler", default=None, metavar="tcp://HOST:PORT", help="dask scheduler address.")
@click.option("--report", "report_id", default=None, metavar="ABLATION_ID",
              help="Rebuild the tables and plots of a stored ablation; run nothing.")
@click.option("--format", "fmt", type=click.Choice(["markdown", "csv", "html"]), default="markdown",
              show_default=True, help="Format printed (every format is also written to results/ablations/ID/).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the table to a file.")
@click.option("--dry-run", is_flag=True, help="Validate and list the variants; run nothing.")
@results_option
@quiet_option
def ablate(source, vary, mode, repeats, metrics, overrides, ablation_id, backend, jobs, scheduler,
           report_id, fmt, out, dry_run, results_dir, quiet):
    """Run an ablation (ABLATION.yaml, or RECIPE with --vary): every variant is validated
    first, runs already stored are skipped, failed runs are recorded and make the exit code 1;
    tables per metric (mean, 95% CI, paired difference to the base) and plots go to
    results/ablations/ID/."""
    from .views.ablation import build_report, render, run_and_report, write_report
    from .config.ablation import check_metrics, plan_ablation
    from .config.locations import results_dir as resolve

    _setup(quiet)
    store = resolve(results_dir)
    chosen = check_metrics(metrics)
    if report_id:
        if source or vary:
            raise BmbenchError("--report rebuilds a stored ablation from the results; give no "
                               "ABLATION.yaml, RECIPE or --vary with it")
        report = build_report(store, report_id, chosen)
        paths = write_report(report, store)
        _emit(render(report, fmt), out)
        click.echo(f"tables and plots in {paths['summary.md'].parent}", err=True)
        return
    if not source:
        raise BmbenchError("give an ablation file, a RECIPE with --vary KEY=V1,V2, or --report ID")
    ablation = plan_ablation(source, vary, overrides, mode, repeats, chosen, ablation_id)
    click.echo(f"ablation {ablation.id}: {len(ablation.variants)} variant(s) x {ablation.repeats} "
               f"repeat(s) = {ablation.n_runs} run(s), all valid", err=True)
    if dry_run:
        for v in ablation.variants:
            seeds = ", ".join(str(r.seed) for r in v.recipes)
            click.echo(f"  {v.index:3d}  {v.label}{' (base)' if v.is_base and v.label != 'base' else ''}"
                       f"  [seeds {seeds}; recipe {v.recipes[0].fingerprint()}]")
        return
    outcome, report, paths = run_and_report(ablation, store, backend, jobs, scheduler,
                                            lambda line: click.echo(line, err=True))
    _emit(render(report, fmt), out)
    click.echo(f"tables and plots in {paths['summary.md'].parent}", err=True)
    if outcome.failed:
        click.echo(f"{len(outcome.failed)} run(s) failed (errors in "
                   f"{outcome.folder / 'ablation.json'}): "
                   + "; ".join(f"{r.key}: {r.error[:120]}" for r in outcome.failed[:3]), err=True)
        sys.exit(1)


@main.command()
@click.argument("recipe", required=False, type=click.Path(dir_okay=False))
@set_option
@click.option("--trials", type=click.IntRange(1, 100_000), default=None,
              help="Trial budget (default: the recipe's tune.trials, else 40); trial 0 is the recipe itself.")
@click.option("--minutes", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Wall-clock budget of this invocation, minutes (alone or with --trials).")
@click.option("--jobs", "-j", type=int, default=1, show_default=True,
              help="local: trials at a time in worker processes sharing the study (-1: one per core); "
                   "dask: trial loops on the cluster (default: one per worker thread).")
@click.option("--backend", type=click.Choice(["local", "dask"]), default="local", show_default=True,
              help="local: this machine; dask: the cluster at --scheduler (workers reach the study "
                   "database: a shared folder, or --storage).")
@click.option("--scheduler", default=None, metavar="tcp://HOST:PORT", help="dask scheduler address.")
@click.option("--storage", default=None, metavar="URL",
              help="Optuna RDB storage URL (default: SQLite at results/studies/ID/study.db).")
@click.option("--study", "study_id", default=None, help="Study id (default: <recipe name>-<hash of recipe and space>).")
@click.option("--resume", is_flag=True, help="Continue a stored study: its finished trials count towards the budget.")
@click.option("--no-refit", is_flag=True, help="Run the trials only; store no run.")
@click.option("--report", "report_id", default=None, metavar="STUDY",
              help="Draw a stored study (optimisation history, fANOVA importances, best parameters); run nothing.")
@click.option("--show-space", is_flag=True, help="Print the search space of RECIPE and exit.")
@results_option
@quiet_option
def tune(recipe, overrides, trials, minutes, jobs, backend, scheduler, storage, study_id, resume, no_refit,
         report_id, show_space, results_dir, quiet):
    """Tune RECIPE with an Optuna study (TPE, seeded) on its validation images, then store the
    best trial as an ordinary run whose run.json records the budget. The search space is the
    recipe's tune.space, else the ranges declared beside each option; test images are never
    used before the final run. Studies live in results/studies/ID/ (SQLite) and resume with
    --resume after an interruption or crash."""
    from .config.locations import results_dir as resolve

    _setup(quiet)
    store = resolve(results_dir)
    if report_id:
        if recipe:
            raise BmbenchError("--report draws a stored study; give no RECIPE with it")
        from .views.tuning import write_study_report

        paths = write_study_report(store, report_id, storage)
        click.echo(paths["summary.md"].read_text())
        click.echo(f"pictures in {paths['summary.md'].parent}", err=True)
        return
    if not recipe:
        raise BmbenchError("give a RECIPE to tune, or --report STUDY")
    from .config.recipe import load_recipe
    from .runs.tune import plan_study

    plan = plan_study(load_recipe(recipe, tuple(overrides)), store, trials, minutes, study_id, storage)
    budget = " and ".join(x for x in (f"{plan.trials} trials" if plan.trials else "",
                                      f"{plan.minutes:g} min" if plan.minutes else "") if x)
    click.echo(f"study {plan.id}: {plan.tune.metric} on the {'%d-fold CV' % plan.tune.cv if plan.tune.cv else 'validation split'}, "
               f"budget {budget}, {len(plan.space)} parameter(s); storage {plan.storage}", err=True)
    if show_space:
        import yaml

        click.echo(yaml.safe_dump(plan.space.to_plain(), sort_keys=False, default_flow_style=None), nl=False)
        return
    from .runs.store import load_record
    from .runs.tune import refit_best, run_study, tuning_record

    study = run_study(plan, store, backend, jobs, scheduler, resume)
    record = tuning_record(plan, study)
    click.echo(f"{record['trials']} trial(s) finished ({record['pruned']} pruned) in {record['minutes']:.1f} min; "
               f"best trial {record['best_trial']}: {record['metric']}={record['best_value']:.4f} on validation"
               + (f" (recipe's own values: {record['default_value']:.4f})" if record["default_value"] is not None else ""),
               err=True)
    click.echo("best parameters: " + ", ".join(f"{k}={v}" for k, v in record["best_params"].items()), err=True)
    if no_refit:
        return
    from .views.notebook import headline

    click.echo(headline(load_record(refit_best(plan, study, store)), f"; tuned {record['trials']} trials"))


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@set_option
@click.option("--all", "show_all", is_flag=True,
              help="Print every key, those the model family does not read included (as the run "
                   "stores and fingerprints it).")
def validate(recipe, overrides, show_all):
    """Check RECIPE and print it fully resolved (defaults filled in), with only the keys its
    model family reads."""
    from .config.recipe import dump_recipe, load_recipe
    from .models.registry import get_family
    from .views.recipe import shown_recipe_text

    r = load_recipe(recipe, tuple(overrides))
    get_family(r.model.family).preflight(r.model.options)
    click.echo(f"# {recipe}: valid" + ("" if show_all else f"; the keys {r.model.family} reads (--all: every key)"))
    click.echo(dump_recipe(r) if show_all else shown_recipe_text(r), nl=False)


if __name__ == "__main__":  # pragma: no cover
    main()
