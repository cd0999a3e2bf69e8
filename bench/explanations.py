"""Which heatmap to show, chosen by numbers: map methods and layers compared on held-out films
with expert lung masks.

    python -m bench.explanations [RUN_DIR] [--lungs LUNGS_DIR] [--data DIR] [--steps 10]
        [--limit N]
        [--out FILE]

RUN_DIR is the classifier's run directory (default: the shipped model). The films are the lung
segmenter's held-out ones (its metadata's ``val_files``, read from ``data_root``), with their
hand-drawn masks. For each method (Grad-CAM, HiResCAM, Grad-CAM++, LayerCAM) at the last
convolutional layer and at the last layer of twice its resolution (14 x 14 for a 224 input),
explaining the predicted class of each film the model accepts, it prints and writes:

- heat in lungs: the share of the map inside the true lung mask (mean, median), and with the
  shipped segmenter's mask (what the product quotes); the lungs' own share is the chance level;
- hottest point in lungs: how often the map's maximum falls inside the true mask;
- deletion and insertion AUC (Petsiuk et al. 2018): the explained class's calibrated
  probability as pixels are replaced by a blurred copy (deletion) or restored onto it
  (insertion) in the map's order, against a random order (mean and standard deviation);
- milliseconds per film for the compiled map graph (batch 1, median).

Writes RUN_DIR/explanations.json (or --out), which the model card's "Where the model looks"
section reads. Rerun it whenever the classifier changes.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

import cv2
import keras
import numpy as np
import tensorflow as tf

from model.decode import decode_file
from model.errors import ImageError
from model.gradcam import CAM_METHODS, SHOWN_METHOD, explanation_layer, finer_layer
from model.lung_fields import heat_in_lungs, hottest_point_in_lungs, mask_from_probabilities
from model.lungs import DEFAULT_LUNGS_DIR, LungSegmenter, read_lungs_metadata
from model.predictor import DEFAULT_RUN_DIR, Predictor
from model.run_dir import EXPLANATIONS_FILE, write_json

BLUR_SIGMA_FRACTION = 1 / 16  # the imputation: a Gaussian blur of sigma S/16
TIMING_FILMS = 10


def map_graph(model: keras.Model, layers: list[str], logits_layer: str, image_size: int):
    """One compiled pass: logits, the predicted class and every method's map at every layer."""
    cam_model = keras.Model(model.inputs[0], [model.get_layer(name).output for name in layers]
                            + [model.get_layer(logits_layer).output])

    @tf.function(input_signature=[tf.TensorSpec((None, image_size, image_size), tf.uint8)])
    def maps(images):
        with tf.GradientTape() as tape:
            *activations, logits = cam_model(images, training=False)
            chosen = tf.argmax(logits, axis=-1, output_type=tf.int32)
            score = tf.gather(logits, chosen, batch_dims=1)
        gradients = tape.gradient(score, activations)
        return logits, chosen, {
            f"{method}@{layer}": function(activation, gradient)
            for layer, activation, gradient in zip(layers, activations, gradients, strict=True)
            for method, function in CAM_METHODS.items()}

    return maps


def single_method_graph(model: keras.Model, layer: str, logits_layer: str, method: str,
                        image_size: int):
    """The graph the product would compile for one method: for timing it alone."""
    cam_model = keras.Model(model.inputs[0], [model.get_layer(layer).output,
                                              model.get_layer(logits_layer).output])

    @tf.function(input_signature=[tf.TensorSpec((None, image_size, image_size), tf.uint8)])
    def run(images):
        with tf.GradientTape() as tape:
            activations, logits = cam_model(images, training=False)
            score = tf.reduce_max(logits, axis=-1)
        return logits, CAM_METHODS[method](activations, tape.gradient(score, activations))

    return run


def pixel_order(heatmap: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Pixel indices of the (size, size) square, hottest first; ties broken at random."""
    upsampled = cv2.resize(heatmap.astype(np.float32), (size, size),
                           interpolation=cv2.INTER_LINEAR).ravel()
    return np.lexsort((rng.random(upsampled.size), -upsampled))


def deletion_insertion(square: np.ndarray, orders: list[np.ndarray], class_index: int,
                       probabilities, steps: int) -> list[tuple[float, float]]:
    """(deletion AUC, insertion AUC) of each pixel order, blur imputation, in one batch."""
    size = square.shape[0]
    blurred = cv2.GaussianBlur(square, (0, 0), size * BLUR_SIGMA_FRACTION)
    counts = np.linspace(0, size * size, steps + 1).astype(int)
    batch = []
    for order in orders:
        for count in counts:
            replaced = np.zeros(size * size, bool)
            replaced[order[:count]] = True
            replaced = replaced.reshape(size, size)
            batch.append(np.where(replaced, blurred, square))  # deletion
            batch.append(np.where(replaced, square, blurred))  # insertion
    curves = probabilities(np.stack(batch))[:, class_index].reshape(len(orders), steps + 1, 2)
    return [(float(np.trapezoid(curve[:, 0], dx=1 / steps)),
             float(np.trapezoid(curve[:, 1], dx=1 / steps))) for curve in curves]


def held_out_films(lungs_dir: Path, data: Path | None, limit: int | None
                   ) -> list[tuple[Path, Path]]:
    """(image, mask) paths of the segmenter's held-out films, from ``data`` or where it was
    trained."""
    metadata = read_lungs_metadata(lungs_dir)
    root = data or Path(metadata.data_root)
    with open(root / "manifest.csv", newline="") as file:
        mask_of = {row["image"]: row["mask"] for row in csv.DictReader(file)}
    films = [(root / name, root / mask_of[name]) for name in metadata.val_files]
    return films[:limit] if limit else films


def summary(values: list[float]) -> dict[str, float]:
    return {"mean": round(float(np.mean(values)), 4), "sd": round(float(np.std(values)), 4),
            "median": round(float(np.median(values)), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, nargs="?", default=DEFAULT_RUN_DIR)
    parser.add_argument("--lungs", type=Path, default=DEFAULT_LUNGS_DIR,
                        help="the lung segmenter's run directory (its held-out films are used)")
    parser.add_argument("--data", type=Path, help="the lung-mask films (default: the folder "
                        "the segmenter was trained from, as its metadata records)")
    parser.add_argument("--steps", type=int, default=10, help="deletion/insertion steps")
    parser.add_argument("--limit", type=int, help="at most this many films (a quick look)")
    parser.add_argument("--out", type=Path, help=f"default: RUN_DIR/{EXPLANATIONS_FILE}")
    args = parser.parse_args()
    predictor = Predictor.load(args.run_dir)
    segmenter = LungSegmenter.load(args.lungs)
    model = keras.saving.load_model(args.run_dir / "model.keras", compile=False)
    size, top = predictor.image_size, predictor.metadata.gradcam_layer
    layers = [top, finer_layer(model, top)]
    maps = map_graph(model, layers, predictor.metadata.logits_layer, size)
    plain = tf.function(lambda images: model(images, training=False))
    probabilities = lambda batch: np.concatenate([  # noqa: E731
        predictor.probabilities(plain(batch[start:start + 64]).numpy())
        for start in range(0, len(batch), 64)])
    rng = np.random.default_rng(0)
    films = held_out_films(args.lungs, args.data, args.limit)
    names = [f"{method}@{layer}" for layer in layers for method in CAM_METHODS]
    rows: dict[str, dict[str, list]] = {name: {"heat": [], "heat_segmenter": [], "hottest": [],
                                                "deletion": [], "insertion": []}
                                        for name in [*names, "random"]}
    lung_fractions, refused, squares = [], 0, []
    for image_path, mask_path in films:
        decoded = decode_file(image_path)
        try:
            square = predictor.admit(decoded)
        except ImageError:
            square = None
        if square is None or predictor.classify([square])[0].refusal is not None:
            refused += 1
            continue
        squares.append(square)
        truth = cv2.resize((cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE) > 127).astype(
            np.float32), (size, size), interpolation=cv2.INTER_AREA) >= 0.5
        true_lungs = mask_from_probabilities(truth.astype(np.float32))
        predicted_lungs = segmenter.segment(decoded.gray)
        lung_fractions.append(float(truth.mean()))
        _, chosen, film_maps = maps(square[None])
        class_index = int(chosen[0])
        orders = [pixel_order(film_maps[name][0].numpy(), size, rng) for name in names]
        orders.append(rng.permutation(size * size))
        aucs = deletion_insertion(square, orders, class_index, probabilities, args.steps)
        for name, (deletion, insertion) in zip([*names, "random"], aucs, strict=True):
            rows[name]["deletion"].append(deletion)
            rows[name]["insertion"].append(insertion)
            if name == "random":
                continue
            heatmap = cv2.resize(film_maps[name][0].numpy(), (size, size),
                                 interpolation=cv2.INTER_LINEAR)
            rows[name]["heat"].append(heat_in_lungs(heatmap, true_lungs) or 0.0)
            rows[name]["heat_segmenter"].append(heat_in_lungs(heatmap, predicted_lungs) or 0.0)
            rows[name]["hottest"].append(hottest_point_in_lungs(heatmap, truth))
    results = {}
    for name in names:
        method, layer = name.split("@")
        runner = single_method_graph(model, layer, predictor.metadata.logits_layer, method, size)
        batch = [square[None] for square in squares[:TIMING_FILMS]]
        runner(batch[0])
        millis = []
        for _ in range(3):
            for item in batch:
                started = time.perf_counter()
                [output.numpy() for output in runner(item)]
                millis.append(1000 * (time.perf_counter() - started))
        row = rows[name]
        results[name] = {
            "method": method, "layer": layer,
            "grid": int(model.get_layer(layer).output.shape[1]),
            "heat_in_lungs": summary(row["heat"]),
            "heat_in_lungs_segmenter_mask": summary(row["heat_segmenter"]),
            "share_half_or_more_in_lungs": round(float(np.mean(np.array(row["heat"]) >= 0.5)), 4),
            "hottest_point_in_lungs": round(float(np.mean(row["hottest"])), 4),
            "deletion_auc": summary(row["deletion"]), "insertion_auc": summary(row["insertion"]),
            "ms_per_film": round(statistics.median(millis), 1)}
    random_order = {"deletion_auc": summary(rows["random"]["deletion"]),
                    "insertion_auc": summary(rows["random"]["insertion"])}
    faithful = [name for name in names
                if results[name]["deletion_auc"]["mean"] < random_order["deletion_auc"]["mean"]
                and results[name]["insertion_auc"]["mean"] > random_order["insertion_auc"]["mean"]]
    chosen_name = max(faithful or names, key=lambda name: (
        results[name]["heat_in_lungs"]["mean"] + results[name]["hottest_point_in_lungs"]))
    report = {
        "model": predictor.version, "films": len(squares), "refused_by_the_model": refused,
        "films_source": f"the lung segmenter's held-out films ({args.lungs.name}/metadata.json)",
        "lung_share_of_image": summary(lung_fractions), "explained_class": "predicted",
        "imputation": f"Gaussian blur, sigma = image size x {BLUR_SIGMA_FRACTION:.4f}",
        "steps": args.steps, "methods": results, "random_order": random_order,
        "chosen": chosen_name, "shown": f"{SHOWN_METHOD}@{explanation_layer(model, top)}",
        "choice_rule": "faithful (deletion AUC below and insertion AUC above the random order, "
                       "means), then the highest heat in lungs + hottest point in lungs",
        "command": "python -m bench.explanations RUN_DIR"}
    print(f"model {predictor.version}: {len(squares)} films ({refused} refused); the lungs "
          f"cover {report['lung_share_of_image']['mean']:.0%} of the image")
    print(f"{'method@layer':32} {'grid':>4} {'heat':>6} {'(seg)':>6} {'hot':>5} "
          f"{'del':>12} {'ins':>12} {'ms':>6}")
    for name, result in results.items():
        print(f"{name:32} {result['grid']:>4} {result['heat_in_lungs']['mean']:6.3f} "
              f"{result['heat_in_lungs_segmenter_mask']['mean']:6.3f} "
              f"{result['hottest_point_in_lungs']:5.2f} "
              f"{result['deletion_auc']['mean']:.3f}±{result['deletion_auc']['sd']:.3f} "
              f"{result['insertion_auc']['mean']:.3f}±{result['insertion_auc']['sd']:.3f} "
              f"{result['ms_per_film']:6.1f}")
    print(f"{'random order':32} {'':>4} {'':>6} {'':>6} {'':>5} "
          f"{random_order['deletion_auc']['mean']:.3f}±{random_order['deletion_auc']['sd']:.3f} "
          f"{random_order['insertion_auc']['mean']:.3f}±"
          f"{random_order['insertion_auc']['sd']:.3f}")
    print(f"best by the rule: {chosen_name}; the product shows {report['shown']}")
    out = args.out or args.run_dir / EXPLANATIONS_FILE
    write_json(out, report)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
