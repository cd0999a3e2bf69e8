"""Validate a run at a site without adapting it: its figures on the site's labelled films.

    python -m training.local_validation --model RUN_DIR --site DIR [--age-group adult|child|auto]

DIR is read exactly as training.adapt reads a site (label folders or a manifest.csv, the same
gate, at least training.adapt.MIN_FILMS usable films), and every usable film is scored by the
run's head as adapt scores its "before" (training.external's figures: recall per label, normal
recall, non-COVID films called COVID-19, pneumonia-vs-normal AUC where both are present), so
"validate only" and an adaptation's before/after on the Sites page are the same figures. Nothing
is held out: nothing is fitted.

The last line of its output is one JSON object: ``{"model", "n", "unreadable", "labels",
"figures"}``, or ``{"error": "..."}`` (exit 1) when the films cannot be validated on.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from model.errors import ModelLoadError
from model.run_dir import RunFileError
from training.site_films import SiteError, read_site
from training.site_head import figures, head_of_predictor


def validate(run_dir: Path, folder: Path, age_group: str | None = None) -> dict:
    """The run's figures on the site's films, with their counts per label; SiteError (or
    ModelLoadError, RunFileError) when they cannot be computed."""
    from model.predictor import Predictor

    predictor = Predictor.load(run_dir)
    site = read_site(folder, predictor, age_group)
    scored = figures(head_of_predictor(predictor), site.features, site.labels, site.populations,
                     site.space, predictor.temperature)
    return {"model": predictor.version, "n": int(len(site.labels)),
            "unreadable": len(site.unreadable),
            "labels": {key: int(np.sum(site.labels == index))
                       for index, key in enumerate(site.space.keys)
                       if np.any(site.labels == index)},
            "figures": scored}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, metavar="RUN_DIR")
    parser.add_argument("--site", type=Path, required=True, metavar="DIR")
    parser.add_argument("--age-group", choices=("adult", "child", "auto"), default="auto",
                        help="the site's patients' age group (default: the model's estimate)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if not args.site.is_dir():
        print(json.dumps({"error": f"no site folder at {args.site}"}))
        return 1
    try:
        result = validate(args.model, args.site, args.age_group)
    except (ModelLoadError, RunFileError, SiteError) as error:
        print(json.dumps({"error": str(error)}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
