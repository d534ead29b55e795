"""Render an audit: console text, JSON, the pair and cluster CSVs, and the contact sheet."""

from __future__ import annotations

import base64
import html
import io
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.errors import BmbenchError
from .core import AuditResult, clusters_line
from .descriptors import HASH_BITS

PAIR_CSV_COLUMNS = ("path_a", "path_b", "label_a", "label_b", "kind", "distance", "parts",
                    "evidence", "hash_distance", "colour_distance", "matches", "label_conflict",
                    "crosses_split", "cluster")
FILES = {"pairs": "duplicate_pairs.csv", "clusters": "near_duplicate_clusters.csv",
         "json": "audit.json", "text": "audit.txt", "png": "contact_sheet.png",
         "html": "contact_sheet.html"}
THUMB = 168
CONFLICT, ACROSS, PLAIN = (200, 30, 30), (230, 120, 0), (150, 150, 150)


# --- text and JSON ---------------------------------------------------------------------------


def _pct(x: float) -> str:
    return "-" if x != x else f"{x:.1%}"


def render_text(r: AuditResult) -> str:
    t, s = r.table, r.split
    lines = [f"bmbench audit: {r.name}: {t.kind} at {t.root}, {len(t):,} images, "
             f"{len(t.classes)} classes (data fingerprint {t.fingerprint})",
             f"split: {s.strategy}, {len(s.folds)} fold(s), fingerprint {s.fingerprint}"
             + ("" if r.spec.group_by == "none" else f", grouped by {r.spec.group_by}"), ""]
    lines += _parts_table(r)
    if not t.has_groups:
        lines.append("patients: the data set has no patient/group ids (cannot check patient overlap)")
    elif r.overlaps:
        lines.append(f"patients: LEAK: {sum(len(o['groups']) for o in r.overlaps)} group(s) on both "
                     "sides of the split")
        for o in r.overlaps[:10]:
            shown = ", ".join(o["groups"][:8]) + (" ..." if len(o["groups"]) > 8 else "")
            lines.append(f"  fold {o['fold']} {o['parts']}: {shown}")
    else:
        lines.append(f"patients: no patient group is on both sides of any fold "
                     f"({t.frame['group'].nunique()} groups)")
    lines += [""] + _duplicates_lines(r) + [""] + _leak_lines(r) + ["", r.verdict.line]
    return "\n".join(lines) + "\n"


def _parts_table(r: AuditResult) -> list[str]:
    classes = list(r.table.classes)
    many = len(r.split.folds) > 1
    head = ["fold", "part"] if many else ["part"]
    rows = [head + ["images", "groups"] + classes]
    for p in r.parts:
        rows.append(([str(p.fold)] if many else []) + [p.part, f"{p.images:,}",
                    "-" if p.groups is None else f"{p.groups:,}"] + [f"{p.class_counts[c]:,}" for c in classes])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    n_left = len(head)
    return ["  " + "  ".join(v.ljust(w) if i < n_left else v.rjust(w)
                             for i, (v, w) in enumerate(zip(row, widths))) for row in rows]


def _duplicates_lines(r: AuditResult) -> list[str]:
    p = r.pairs
    sizes = r.finding.cluster_sizes
    near = p[p["kind"] == "near"]
    by = near["evidence"].value_counts()
    exact_rows = sum(len(g.rows) for g in r.exact)
    lines = [f"exact duplicates: {len(r.exact)} group(s) of byte-identical files ({exact_rows} images)",
             f"near duplicates: {len(near):,} pair(s) ({int(by.get('hash', 0)):,} by perceptual hash, "
             f"{int(by.get('keypoints', 0)):,} by colour + keypoints; {r.finding.verified:,} candidate "
             "pair(s) checked)",
             clusters_line(sizes)]
    conflicts = p[p["label_conflict"]]
    lines.append(f"label noise: {len(conflicts)} duplicate pair(s) with different labels"
                 + ("" if conflicts.empty else ", e.g."))
    for _, row in conflicts.head(5).iterrows():
        lines.append(f"  {row['kind']}: {row['path_a']} [{row['label_a']}]  ~  {row['path_b']} [{row['label_b']}]")
    where = "train/val" if len(r.split.folds) == 1 else "the training folds"
    lines.append(f"across the split: {r.n_test_with_copies} of {r.n_test} test images "
                 f"({r.n_test_with_copies / max(r.n_test, 1):.1%}) have an exact or near copy in {where}")
    if r.descriptors.errors:
        lines.append(f"unreadable: {len(r.descriptors.errors)} image(s) skipped, e.g. "
                     f"{next(iter(r.descriptors.errors.values()))}")
    return lines


def _leak_lines(r: AuditResult) -> list[str]:
    rows = [("split", "test images", "1-NN accuracy")]
    rows += [(s.description, f"{s.n:,}", _pct(s.accuracy)) for s in r.leak["scores"]]
    w0 = max(len(x[0]) for x in rows)
    w1 = max(len(x[1]) for x in rows)
    lines = ["leak score: accuracy of a 1-nearest-neighbour on colour histograms"]
    lines += [f"  {a.ljust(w0)}  {b.rjust(w1)}  {c.rjust(13)}" for a, b, c in rows]
    return lines


def to_dict(r: AuditResult) -> dict:
    sizes = r.finding.cluster_sizes
    p = r.pairs
    return {
        "name": r.name,
        "dataset": {"kind": r.table.kind, "root": str(r.table.root), "fingerprint": r.table.fingerprint,
                    "n_images": len(r.table), "classes": list(r.table.classes)},
        "split": {"strategy": r.split.strategy, "fingerprint": r.split.fingerprint,
                  "settings": r.split.settings, "folds": len(r.split.folds)},
        "parts": [p_.as_dict() for p_ in r.parts],
        "patients": {"has_groups": r.table.has_groups, "overlaps": r.overlaps},
        "duplicates": {
            "exact_groups": len(r.exact), "near_pairs": int((p["kind"] == "near").sum()),
            "pairs_by_evidence": {k: int(v) for k, v in p["evidence"].value_counts().items()},
            "candidates_checked": r.finding.verified,
            "clusters": int((sizes > 1).sum()), "images_in_clusters": int(sizes[sizes > 1].sum()),
            "largest_cluster": int(sizes.max(initial=0)),
            "label_conflicts": int(p["label_conflict"].sum()),
            "pairs_across_split": int(p["crosses_split"].sum()),
            "test_images_with_copies": r.n_test_with_copies, "n_test": r.n_test,
            "settings": r.finding.settings.as_dict()},
        "unreadable": {r.table.frame["relpath"].iloc[i]: e for i, e in r.descriptors.errors.items()},
        "leak": {"scores": [s.as_dict() for s in r.leak["scores"]],
                 "comparison": r.leak["comparison"].as_dict(), "predefined": r.leak["predefined"]},
        "verdict": {"level": r.verdict.level, "message": r.verdict.message},
        "seconds": round(r.seconds, 2),
        "files": {k: str(v) for k, v in r.files.items()},
    }


# --- files -----------------------------------------------------------------------------------

def write_reports(r: AuditResult, out: str | os.PathLike, sheet: int = 24) -> dict[str, Path]:
    """Write every report file into ``out``; returns ``{name: path}`` (also kept in ``r.files``)."""
    from ..core.atomic import open_atomic, write_text

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BmbenchError(f"--out {out}: is a file; give a folder for the audit report")
    try:
        out.mkdir(parents=True, exist_ok=True)
        files = {k: out / v for k, v in FILES.items()}
        r.files = files
        write_text(files["pairs"], r.pairs.loc[:, list(PAIR_CSV_COLUMNS)].to_csv(index=False))
        write_text(files["clusters"], cluster_table(r).to_csv(index=False))
        worst = r.pairs.head(sheet)
        thumbs = _thumbnails(r, worst)
        with open_atomic(files["png"], "wb") as fh:
            contact_sheet(r, worst, thumbs).save(fh, format="PNG", optimize=True)
        write_text(files["html"], contact_sheet_html(r, worst, thumbs, files["png"].name))
        write_text(files["text"], render_text(r))
        write_text(files["json"], json.dumps(to_dict(r), indent=2) + "\n")
    except OSError as exc:
        raise BmbenchError(f"{out}: cannot write the audit report ({exc.strerror or exc})") from None
    return files


def cluster_table(r: AuditResult) -> pd.DataFrame:
    """One row per image in a cluster of two or more: cluster, size, path, label, part."""
    clusters = r.finding.clusters
    sizes = np.bincount(clusters)
    rows = np.flatnonzero(sizes[clusters] > 1)
    frame = r.table.frame
    parts = []
    for i, fold in enumerate(r.split.folds):
        names = np.full(len(r.table), "", dtype=object)
        for part in ("train", "val", "test"):
            names[getattr(fold, part)] = part if len(r.split.folds) == 1 else f"{part}@fold{i}"
        parts.append(names)
    part = parts[0] if len(parts) == 1 else np.array(
        [next((p[i] for p in parts if p[i].startswith("test")), "") for i in range(len(r.table))], dtype=object)
    out = pd.DataFrame({"cluster": clusters[rows], "size": sizes[clusters[rows]],
                        "path": frame["relpath"].to_numpy()[rows], "label": frame["label"].to_numpy()[rows],
                        "part": part[rows]})
    return out.sort_values(["size", "cluster", "path"], ascending=[False, True, True]).reset_index(drop=True)


def _thumbnails(r: AuditResult, pairs: pd.DataFrame) -> dict[int, object]:
    from PIL import Image

    from ..data.imageio import read_rgb
    from ..core.errors import DatasetError

    out = {}
    for row in np.unique(pairs[["row_a", "row_b"]].to_numpy()):
        try:
            im = Image.fromarray(read_rgb(r.table.frame["path"].iloc[row]))
        except DatasetError:
            im = Image.new("RGB", (THUMB, THUMB), (235, 235, 235))
        im.thumbnail((THUMB, THUMB), Image.LANCZOS)
        out[int(row)] = im
    return out


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType sizes
        return ImageFont.load_default()


def _fit(draw, text: str, font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while len(text) > 4 and draw.textlength("..." + text, font=font) > width:
        text = text[1:]
    return "..." + text


def _wrap(draw, text: str, font, width: int) -> list[str]:
    lines, current = [], ""
    for word in text.split():
        trial = f"{current} {word}".strip()
        if current and draw.textlength(trial, font=font) > width:
            lines.append(current)
            current = word
        else:
            current = trial
    return lines + ([current] if current else [])


def _pair_title(row) -> str:
    if row["kind"] == "exact":
        return "exact copy (identical bytes)"
    if row["evidence"] == "hash":
        return f"near: hash {round(row['hash_distance'] * HASH_BITS)}/{HASH_BITS} bits"
    return f"near: {row['matches']} keypoint matches, colour {row['colour_distance']:.3f}"


def _flag(row) -> tuple[str, tuple]:
    if row["label_conflict"]:
        return "LABEL CONFLICT", CONFLICT
    if row["crosses_split"]:
        return f"ACROSS SPLIT {row['parts']}", ACROSS
    return f"same part ({row['parts'].split('/')[0]})", PLAIN


def contact_sheet(r: AuditResult, pairs: pd.DataFrame, thumbs: dict, per_row: int = 3):
    """A PNG-ready PIL image of ``pairs``: both thumbnails, labels, parts and the evidence."""
    from PIL import Image, ImageDraw

    title_font, font, small = _font(20), _font(15), _font(13)
    pad, gap, line = 14, 8, 18
    tile_w = 2 * THUMB + gap + 2 * pad
    tallest = max((im.height for im in thumbs.values()), default=THUMB)
    tile_h = 2 * line + tallest + 3 * line + 2 * pad + 8
    cols = max(1, min(per_row, len(pairs)))
    title = f"bmbench audit: {r.name} - {len(pairs)} worst of {len(r.pairs):,} duplicate pairs"
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    width = max(cols * tile_w + (cols + 1) * gap, int(probe.textlength(title, font=title_font)) + 2 * gap + 12)
    n_verdict = len(_wrap(probe, r.verdict.line, small, width - 2 * gap - 8))
    header = 74 + 16 * n_verdict
    rows = max(1, -(-len(pairs) // cols))
    sheet = Image.new("RGB", (width, header + rows * (tile_h + gap) + gap), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((gap + 4, 10), title, fill=(20, 20, 20), font=title_font)
    verdict = _wrap(draw, r.verdict.line, small, sheet.width - 2 * gap - 8)
    for i, text in enumerate(verdict):
        draw.text((gap + 4, 38 + i * 16), text, fill=(60, 60, 60), font=small)
    x, y = gap + 4, 44 + 16 * len(verdict)
    for text, colour in (("label conflict", CONFLICT), ("across the split", ACROSS), ("same part", PLAIN)):
        draw.rectangle((x, y, x + 14, y + 14), outline=colour, width=3)
        draw.text((x + 20, y - 1), text, fill=(40, 40, 40), font=small)
        x += int(draw.textlength(text, font=small)) + 48
    if pairs.empty:
        empty = "no duplicate pairs found" if r.pairs.empty else "no pairs shown (--sheet 0)"
        draw.text((gap + 4, header + 10), empty, fill=(40, 40, 40), font=font)
    for k, (_, row) in enumerate(pairs.iterrows()):
        x0 = gap + (k % cols) * (tile_w + gap)
        y0 = header + (k // cols) * (tile_h + gap)
        flag, colour = _flag(row)
        draw.rectangle((x0, y0, x0 + tile_w - 1, y0 + tile_h - 1), outline=colour, width=4)
        draw.text((x0 + pad, y0 + pad - 2), f"#{k + 1}  {_pair_title(row)}", fill=(20, 20, 20), font=font)
        draw.text((x0 + pad, y0 + pad - 2 + line), flag, fill=colour if colour != PLAIN else (90, 90, 90), font=font)
        top = y0 + pad + 2 * line + 6
        tall = max(thumbs[int(row["row_a"])].height, thumbs[int(row["row_b"])].height)
        for j, side in enumerate(("a", "b")):
            im = thumbs[int(row[f"row_{side}"])]
            bx = x0 + pad + j * (THUMB + gap)
            sheet.paste(im, (bx + (THUMB - im.width) // 2, top + (tall - im.height) // 2))
            part = row["parts"].split("/")[j]
            label_colour = CONFLICT if row["label_conflict"] else (20, 20, 20)
            ty = top + tall + 6
            draw.text((bx, ty), _fit(draw, str(row[f"label_{side}"]), font, THUMB), fill=label_colour, font=font)
            draw.text((bx, ty + line), _fit(draw, part or "-", small, THUMB), fill=(70, 70, 70), font=small)
            draw.text((bx, ty + 2 * line), _fit(draw, Path(row[f"path_{side}"]).name, small, THUMB),
                      fill=(110, 110, 110), font=small)
    return sheet


def _data_uri(im) -> str:
    buf = io.BytesIO()
    im.convert("RGB").save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def contact_sheet_html(r: AuditResult, pairs: pd.DataFrame, thumbs: dict, png_name: str) -> str:
    """A self-contained HTML page (thumbnails embedded) of ``pairs``, worst first."""
    e = html.escape
    uris = {k: _data_uri(v) for k, v in thumbs.items()}
    rows = []
    for k, (_, row) in enumerate(pairs.iterrows()):
        flag, colour = _flag(row)
        cells = []
        for j, side in enumerate(("a", "b")):
            cells.append(f"<td><img src='{uris[int(row[f'row_{side}'])]}' alt=''><br>"
                         f"<b class='{'bad' if row['label_conflict'] else ''}'>{e(str(row[f'label_{side}']))}</b>"
                         f" &middot; {e(row['parts'].split('/')[j] or '-')}<br>"
                         f"<small>{e(str(row[f'path_{side}']))}</small></td>")
        rows.append(f"<tr style='border-left:6px solid rgb{colour}'><td>{k + 1}</td>{''.join(cells)}"
                    f"<td>{e(_pair_title(row))}<br><span style='color:rgb{colour}'>{e(flag)}</span><br>"
                    f"<small>cluster {int(row['cluster'])}</small></td></tr>")
    verdict_class = {"leak": "bad", "caution": "warn"}.get(r.verdict.level, "good")
    empty = "no duplicate pairs found" if r.pairs.empty else "no pairs shown (--sheet 0)"
    body = "\n".join(rows) or f"<tr><td colspan='4'>{empty}</td></tr>"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>bmbench audit: {e(r.name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; }} td {{ padding: 6px 10px; vertical-align: top; border-bottom: 1px solid #ddd; }}
img {{ max-width: {THUMB}px; max-height: {THUMB}px; }} .bad {{ color: #c81e1e; }} .warn {{ color: #e67800; }}
.good {{ color: #1e7a1e; }} pre {{ background: #f6f6f6; padding: 1em; overflow-x: auto; }}
</style></head><body>
<h1>bmbench audit: {e(r.name)}</h1>
<p class="{verdict_class}"><b>{e(r.verdict.line)}</b></p>
<p>{len(pairs)} worst of {len(r.pairs):,} duplicate pairs (label conflicts first, then pairs across the
split, then exact copies, then by distance). All pairs: <code>{FILES['pairs']}</code>; clusters:
<code>{FILES['clusters']}</code>; the same sheet as an image: <a href="{e(png_name)}">{e(png_name)}</a>.</p>
<table><tr><th>#</th><th>image A</th><th>image B</th><th>evidence</th></tr>
{body}
</table>
<h2>Full report</h2>
<pre>{e(render_text(r))}</pre>
</body></html>
"""
