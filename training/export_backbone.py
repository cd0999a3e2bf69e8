"""Write a trained run's backbone alone, for other chest X-ray models to start from.

    python -m training.export_backbone --run RUN_DIR --out FILE.weights.h5

Writes FILE.weights.h5 (the backbone's weights, the model's normalisation layer first) and
FILE.json beside it: the input contract (image size, grey uint8 input, normalisation, backbone
name, feature size, the source run's version). Load it with
training.base_model.load_exported_backbone, or train from it with
`python -m training.train --weights FILE.weights.h5` (or straight from the run: --weights RUN_DIR).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from training.backbones import BackboneWeightsError
from training.base_model import export_backbone


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="trained run directory")
    parser.add_argument("--out", type=Path, required=True, help="FILE.weights.h5 to write")
    args = parser.parse_args(argv)
    try:
        contract = export_backbone(args.run, args.out)
    except (BackboneWeightsError, ValueError) as error:
        parser.error(str(error))
    print(f"wrote {args.out} and {contract}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
