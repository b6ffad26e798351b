"""Procedurally rendered coloured shapes with captions, for text-to-image diffusion.

Each image (black background, default 32x32 RGB in [-1, 1]) holds one or two objects. An object
is a shape (circle, square, triangle, cross) in one of six colours (red, green, blue, yellow,
magenta, cyan), small or large, at a position: left, right, top, bottom or centre for one
object; left + right or top + bottom for two (one per half, so they never overlap). Edges are
anti-aliased from signed distances; position and size get a small seeded jitter.

`dataset.scenes[i]` is the structured description (a list of dicts with keys shape, colour,
position, size) and `dataset.captions[i]` one of several phrasings of it, e.g.
"a red triangle on the left", "left: red triangle", "a small red triangle on the left".

Compositional splits: the four (shape, colour) pairs in `HELDOUT_COMBINATIONS` (one per shape,
each with a different colour, so every shape and colour is still seen with other partners)
never occur in "train" ("all" is "train"); "heldout" scenes each contain at least one of them;
"test" uses only seen pairs, drawn from a different random stream than "train".

`analyze_shapes` reads images back into objects without any learned model: connected
components of the bright pixels, colour by the nearest palette hue, shape by correlating the
object's soft mask with each shape's template at the same area and centroid, size from the
fitted radius and position from the nearest anchor. `score_against` compares with the truth.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from unnoise.data.base import ArrayDataset, choice, positive_int, seed_int
from unnoise.device import cpu
from unnoise.errors import UnnoiseError

SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = {  # RGB in [0, 1]; hues well apart so even blurred or dimmed objects keep their name
    "red": (0.95, 0.15, 0.15),
    "green": (0.15, 0.80, 0.20),
    "blue": (0.15, 0.25, 1.00),
    "yellow": (0.95, 0.85, 0.10),
    "magenta": (0.90, 0.20, 0.90),
    "cyan": (0.10, 0.90, 0.90),
}
COLOUR_NAMES = tuple(COLOURS)
POSITIONS = ("left", "right", "top", "bottom", "centre")
ANCHORS = {  # object centre in image units (x right, y down, both in [0, 1])
    "left": (0.25, 0.5), "right": (0.75, 0.5), "top": (0.5, 0.25), "bottom": (0.5, 0.75),
    "centre": (0.5, 0.5),
}
PAIRS = (("left", "right"), ("top", "bottom"))
SIZES = {"small": 0.11, "large": 0.18}  # half-extent of the shape, in image units
SIZE_SPLIT = 0.145  # fitted radius above this reads as "large"
POSITION_JITTER = 0.02  # uniform +- shift of the centre (keeps two objects >= 2.5 px apart at 32)
SIZE_JITTER = 0.05  # uniform +- relative change of the radius
SQUARE_HALF = 0.85  # square half-side / radius
CROSS_ARM = 0.35  # cross arm half-width / radius
AREA = {  # shape area / radius^2
    "circle": math.pi, "square": 4 * SQUARE_HALF**2, "triangle": 2.0,
    "cross": 8 * CROSS_ARM - 4 * CROSS_ARM**2,
}
CENTROID_DROP = {"circle": 0.0, "square": 0.0, "triangle": 1 / 3, "cross": 0.0}  # centroid below centre / r

HELDOUT_COMBINATIONS = (("circle", "yellow"), ("square", "cyan"), ("triangle", "red"), ("cross", "blue"))
SPLITS = ("all", "train", "test", "heldout")
SPLIT_STREAM = {"all": 0, "train": 0, "test": 1, "heldout": 2}
OBJECT_COUNTS = ("1", "2", "1-2")
MIN_SIZE = 16
WHERE = {"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom",
         "centre": "in the centre"}

_PALETTE = torch.tensor(list(COLOURS.values()), dtype=torch.float32)
_COMBO_NAMES = [f"{colour} {shape}" for shape in SHAPES for colour in COLOUR_NAMES]
_HELDOUT_IDS = np.array([SHAPES.index(s) * len(COLOURS) + COLOUR_NAMES.index(c)
                         for s, c in HELDOUT_COMBINATIONS])
_SEEN_IDS = np.setdiff1d(np.arange(len(SHAPES) * len(COLOURS)), _HELDOUT_IDS)
_PAIR_POSITIONS = np.array([[POSITIONS.index(a), POSITIONS.index(b)] for a, b in PAIRS])
_ANCHOR_XY = np.array([ANCHORS[p] for p in POSITIONS])
_RENDER_CHUNK = 32768  # objects per rendering pass (a 16x16 window each at size 32: ~32 MB)


def scene_is_heldout(scene) -> bool:
    """True when any object of `scene` (a list of object dicts) is a held-out (shape, colour) pair."""
    return any((obj["shape"], obj["colour"]) in HELDOUT_COMBINATIONS for obj in scene)


# ---- rendering ----------------------------------------------------------------------------


def _signed_distance(shape: str, dx: torch.Tensor, dy: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Signed distance (negative inside; exact or a close bound near corners) to a shape of radius r."""
    ax, ay = dx.abs(), dy.abs()
    if shape == "circle":
        return torch.sqrt(dx * dx + dy * dy) - r
    if shape == "square":
        return torch.maximum(ax, ay) - SQUARE_HALF * r
    if shape == "triangle":  # apex up at (0, -r), base from (-r, r) to (r, r)
        return torch.maximum(dy - r, (2 * ax - dy - r) / math.sqrt(5.0))
    arm = CROSS_ARM * r
    return torch.minimum(torch.maximum(ax - r, ay - arm), torch.maximum(ax - arm, ay - r))


def _coverage(shape_ids: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor,
              xs: torch.Tensor, ys: torch.Tensor, size: int) -> torch.Tensor:
    """Anti-aliased coverage (M, Y, X) of each shape at its own pixel-centre coordinates xs (M, X)
    and ys (M, Y), all in image units; the edge is one pixel (1 / size) wide."""
    coverage = torch.zeros(len(shape_ids), ys.shape[1], xs.shape[1])
    for index, shape in enumerate(SHAPES):
        rows = (shape_ids == index).nonzero().flatten()
        if len(rows):
            dx = (xs[rows] - centres[rows, 0:1]).unsqueeze(1)
            dy = (ys[rows] - centres[rows, 1:2]).unsqueeze(2)
            distance = _signed_distance(shape, dx, dy, radii[rows].view(-1, 1, 1))
            coverage[rows] = distance.mul_(-size).add_(0.5).clamp_(0.0, 1.0)
    return coverage


def render_coverage(shape_ids, centres, radii, size: int) -> torch.Tensor:
    """Anti-aliased coverage in [0, 1], (M, size, size), of shapes SHAPES[shape_ids[m]] centred at
    centres[m] = (x, y) with radius radii[m] (image units, x right, y down)."""
    shape_ids = torch.as_tensor(shape_ids, dtype=torch.long).reshape(-1)
    centres = torch.as_tensor(centres, dtype=torch.float32).reshape(-1, 2)
    radii = torch.as_tensor(radii, dtype=torch.float32).reshape(-1)
    grid = ((torch.arange(size, dtype=torch.float32) + 0.5) / size).expand(len(shape_ids), size)
    return _coverage(shape_ids, centres, radii, grid, grid, size)


def _render(image_ids, shape_ids, colour_ids, centres, radii, count: int, size: int) -> torch.Tensor:
    """Paint the listed objects onto `count` black images; returns (count, 3, size, size) in [-1, 1].
    Each object is drawn only in a square window around it, then added into its image."""
    window = min(size, math.ceil(2 * float(radii.max()) * size) + 3) if len(radii) else 1
    offset = torch.arange(window)
    images = torch.full((count * 3 * size * size,), -1.0)  # black; each object adds 2 * colour * coverage
    pattern = (torch.arange(3).view(3, 1, 1) * size + offset.view(1, -1, 1)) * size + offset.view(1, 1, -1)
    for start in range(0, len(image_ids), _RENDER_CHUNK):
        part = slice(start, start + _RENDER_CHUNK)
        corner = ((centres[part] - radii[part, None]) * size).floor().long() - 1
        corner = corner.clamp(0, size - window)  # (M, 2): first column, first row of the window
        xs, ys = (corner[:, :1] + offset + 0.5) / size, (corner[:, 1:] + offset + 0.5) / size
        coverage = _coverage(shape_ids[part], centres[part], radii[part], xs, ys, size)
        base = (image_ids[part] * 3 * size + corner[:, 1]) * size + corner[:, 0]
        paint = coverage.unsqueeze(1) * (2.0 * _PALETTE[colour_ids[part]]).view(-1, 3, 1, 1)
        images.index_add_(0, (base.view(-1, 1, 1, 1) + pattern).flatten(), paint.flatten())
    return images.view(count, 3, size, size)


def render_scenes(scenes, size: int = 32) -> torch.Tensor:
    """Render structured scenes (lists of object dicts) exactly at their anchors, without jitter."""
    flat = [(i, obj) for i, scene in enumerate(scenes) for obj in scene]
    image_ids = torch.tensor([i for i, _ in flat], dtype=torch.long)
    shape_ids = torch.tensor([SHAPES.index(o["shape"]) for _, o in flat], dtype=torch.long)
    colour_ids = torch.tensor([COLOUR_NAMES.index(o["colour"]) for _, o in flat], dtype=torch.long)
    centres = torch.tensor([ANCHORS[o["position"]] for _, o in flat], dtype=torch.float32).reshape(-1, 2)
    radii = torch.tensor([SIZES[o["size"]] for _, o in flat], dtype=torch.float32)
    return _render(image_ids, shape_ids, colour_ids, centres, radii, len(scenes), size)


# ---- scenes and captions ------------------------------------------------------------------


def _sample(n: int, split: str, objects: str, seed: int) -> dict[str, np.ndarray]:
    """Draw every scene's parameters at once; slot 1 is unused (position -1) in one-object scenes."""
    rng = np.random.default_rng([seed, SPLIT_STREAM[split]])
    count = np.full(n, int(objects[-1])) if objects != "1-2" else rng.integers(1, 3, n)
    single = np.stack([rng.integers(0, len(POSITIONS), n), np.full(n, -1)], axis=1)
    position = np.where(count[:, None] == 1, single, _PAIR_POSITIONS[rng.integers(0, len(PAIRS), n)])
    combo = _SEEN_IDS[rng.integers(0, len(_SEEN_IDS), (n, 2))]
    if split == "heldout":  # one present slot per scene gets a held-out pair, the other any pair
        combo = rng.integers(0, len(_COMBO_NAMES), (n, 2))
        forced = (rng.random(n) * count).astype(np.int64)
        combo[np.arange(n), forced] = _HELDOUT_IDS[rng.integers(0, len(_HELDOUT_IDS), n)]
    return {
        "count": count, "position": position, "combo": combo, "size": rng.integers(0, len(SIZES), (n, 2)),
        "shift": rng.uniform(-POSITION_JITTER, POSITION_JITTER, (n, 2, 2)),
        "scale": 1.0 + rng.uniform(-SIZE_JITTER, SIZE_JITTER, (n, 2)), "style": rng.integers(0, 5, n),
    }


def _scenes(params: dict[str, np.ndarray]) -> list[list[dict[str, str]]]:
    """Structured descriptions, objects in reading order (left before right, top before bottom)."""
    size_names = list(SIZES)
    scenes = []
    columns = [params[key].tolist() for key in ("count", "position", "combo", "size")]
    for count, position, combo, size in zip(*columns):
        scenes.append([
            {"shape": SHAPES[combo[k] // len(COLOURS)], "colour": COLOUR_NAMES[combo[k] % len(COLOURS)],
             "position": POSITIONS[position[k]], "size": size_names[size[k]]}
            for k in range(count)
        ])
    return scenes


def _article(o: dict) -> str:
    return f"a {o['colour']} {o['shape']} {WHERE[o['position']]}"


def _sized(o: dict) -> str:
    return f"a {o['size']} {o['colour']} {o['shape']} {WHERE[o['position']]}"


def _tagged(o: dict) -> str:
    return f"{o['position']}: {o['colour']} {o['shape']}"


def _bare(o: dict) -> str:
    return f"{o['colour']} {o['shape']} {WHERE[o['position']]}"


CAPTION_STYLES = ((_article, " and ", False), (_tagged, "; ", False), (_sized, " and ", False),
                  (_article, " and ", True), (_bare, ", ", False))  # (phrase, joiner, reversed order)


def caption(scene, style: int = 0) -> str:
    """The scene in phrasing `style` (0..4), e.g. "a red triangle on the left and a blue circle
    on the right", "left: red triangle; right: blue circle"."""
    phrase, joiner, backwards = CAPTION_STYLES[style % len(CAPTION_STYLES)]
    ordered = list(reversed(scene)) if backwards else list(scene)
    return joiner.join(phrase(obj) for obj in ordered)


# ---- the dataset --------------------------------------------------------------------------


def _options(size, n, split, objects, seed) -> tuple[int, int, str, str, int]:
    """Validate the loader's options; each error is one line naming the option."""
    size, n = positive_int(size, "shapes size"), positive_int(n, "shapes n")
    if size < MIN_SIZE:
        raise UnnoiseError(f"shapes size must be at least {MIN_SIZE}, got {size}")
    split = choice(split, "shapes split", SPLITS)
    objects = choice(objects, "shapes objects", OBJECT_COUNTS, {"mixed": "1-2"})
    return size, n, split, objects, seed_int(seed, "shapes seed")


def load_shapes(
    size: int = 32, n: int = 20000, split: str = "all", objects: str = "1-2", seed: int = 0
) -> ArrayDataset:
    """`n` captioned (3, size, size) images of one or two shapes (`objects`: "1", "2" or "1-2").
    `split`: "train" (= "all") never shows a held-out (shape, colour) pair, "heldout" always shows
    one, "test" shows seen pairs from another random stream. Adds `captions`, `scenes`, `levels`;
    with objects="1" the labels are the (shape, colour) class, e.g. "red circle"."""
    size, n, split, objects, seed = _options(size, n, split, objects, seed)
    params = _sample(n, split, objects, seed)
    present = np.arange(2)[None, :] < params["count"][:, None]
    image_ids, slots = np.nonzero(present)
    combo = params["combo"][image_ids, slots]
    centres = _ANCHOR_XY[params["position"][image_ids, slots]] + params["shift"][image_ids, slots]
    radii = np.array(list(SIZES.values()))[params["size"][image_ids, slots]]
    radii = radii * params["scale"][image_ids, slots]
    images = _render(torch.from_numpy(image_ids), torch.from_numpy(combo // len(COLOURS)),
                     torch.from_numpy(combo % len(COLOURS)), torch.from_numpy(centres).float(),
                     torch.from_numpy(radii).float(), n, size)
    labels = torch.from_numpy(params["combo"][:, 0]) if objects == "1" else None
    dataset = ArrayDataset(images, labels, _COMBO_NAMES if objects == "1" else None, name="shapes",
                           modality="image")
    dataset.scenes = _scenes(params)
    styles = params["style"].tolist()
    dataset.captions = [caption(scene, style) for scene, style in zip(dataset.scenes, styles)]
    return dataset


# ---- reading images back ------------------------------------------------------------------

FOREGROUND = 0.3  # brightest channel (in [0, 1]) above which a pixel belongs to an object
MIN_AREA = 0.004  # components smaller than this fraction of the image are ignored as specks
TEMPLATE_BLURS = (0.0, 0.8, 1.4)  # template blurs (pixels) tried, so soft or blurry objects still match


def _components(mask: torch.Tensor) -> torch.Tensor:
    """8-connected component ids (0 = background) of a boolean (N, H, W) mask, by max-propagation."""
    height, width = mask.shape[-2:]
    ids = torch.arange(1, height * width + 1, dtype=torch.float32).view(1, height, width) * mask
    for _ in range(height * width):
        grown = F.max_pool2d(ids.unsqueeze(1), 3, 1, 1).squeeze(1) * mask
        if torch.equal(grown, ids):
            break
        ids = grown
    return ids


def _blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur (zero padding) of square (M, H, H) maps, as two small matrix products;
    sigma in pixels, 0 returns them unchanged."""
    if sigma <= 0:
        return maps
    taps = torch.arange(maps.shape[-1], dtype=torch.float32)
    kernel = torch.exp(-((taps.view(-1, 1) - taps) ** 2) / (2 * sigma**2))
    kernel = kernel * ((taps.view(-1, 1) - taps).abs() <= 3 * sigma)
    kernel = kernel / kernel.sum(1, keepdim=True).amax()
    return kernel @ maps @ kernel.T


def _colours(pixels: torch.Tensor, component: torch.Tensor) -> torch.Tensor:
    """Palette index closest in hue (cosine) to each component's bright core; (K, 3, H, W) -> (K,)."""
    bright = pixels.amax(1) * component
    core = bright >= 0.7 * bright.flatten(1).amax(1).view(-1, 1, 1)
    mean = (pixels * core.unsqueeze(1)).sum((2, 3)) / core.sum((1, 2)).clamp(min=1).unsqueeze(1)
    return F.cosine_similarity(mean.unsqueeze(1), _PALETTE.unsqueeze(0), dim=2).argmax(1)


def _fit_shapes(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Best shape per soft mask (K, H, W): every shape's template is drawn with the mask's area and
    centroid, blurred a little or not, and the best cosine match wins. Returns the shape index
    (K,), the fitted centre (K, 2) and radius (K,)."""
    count, size = weight.shape[0], weight.shape[-1]
    grid = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    total = weight.sum((1, 2)).clamp(min=1e-6)
    gx, gy = (weight.sum(1) * grid).sum(1) / total, (weight.sum(2) * grid).sum(1) / total
    radii = (total.view(-1, 1) / size**2 / torch.tensor([AREA[s] for s in SHAPES])).sqrt()  # (K, S)
    drop = torch.tensor([CENTROID_DROP[s] for s in SHAPES])
    centres = torch.stack([gx.view(-1, 1).expand_as(radii), gy.view(-1, 1) - drop * radii], dim=2)
    shapes = torch.arange(len(SHAPES)).repeat(count)
    templates = render_coverage(shapes, centres.view(-1, 2), radii.view(-1), size)
    target = F.normalize(weight.flatten(1), dim=1).unsqueeze(1)
    scores = torch.stack([
        (F.normalize(_blur(templates, sigma).view(count, len(SHAPES), -1), dim=2) * target).sum(2)
        for sigma in TEMPLATE_BLURS
    ]).amax(0)
    best = scores.argmax(1)
    rows = torch.arange(count)
    return best, centres[rows, best], radii[rows, best]


def _describe(pixels: torch.Tensor, component: torch.Tensor, others: torch.Tensor) -> list[dict]:
    """Shape, colour, size and position of K components of (K, 3, H, W) images in [0, 1]."""
    colour = _colours(pixels, component)
    paint = _PALETTE[colour].view(-1, 3, 1, 1)
    region = F.max_pool2d(component.unsqueeze(1).float(), 5, 1, 2).squeeze(1).bool() & ~others
    weight = (pixels * paint).sum(1) / (paint * paint).sum(1) * region  # soft coverage by this object
    shape, centre, radius = _fit_shapes(weight)
    anchor = ((centre.unsqueeze(1) - torch.from_numpy(_ANCHOR_XY).float()) ** 2).sum(2).argmin(1)
    return [{"shape": SHAPES[s], "colour": COLOUR_NAMES[c], "position": POSITIONS[a],
             "size": "large" if r > SIZE_SPLIT else "small", "_key": x + y}
            for s, c, a, r, (x, y) in zip(shape.tolist(), colour.tolist(), anchor.tolist(),
                                          radius.tolist(), centre.tolist())]


def _analyze_batch(images: torch.Tensor) -> list[list[dict]]:
    """Objects of each (3, H, W) image of a batch in [-1, 1], in reading order."""
    pixels = (images.clamp(-1.0, 1.0) + 1.0) / 2.0
    count, _, height, width = pixels.shape
    foreground = pixels.amax(1) > FOREGROUND
    ids = _components(foreground).long() + torch.arange(count).view(-1, 1, 1) * (height * width + 1)
    values, sizes = ids[foreground].unique(return_counts=True)
    values = values[sizes >= max(3.0, MIN_AREA * height * width)]
    image_of = values // (height * width + 1)
    component = ids[image_of] == values.view(-1, 1, 1)
    found = _describe(pixels[image_of], component, foreground[image_of] & ~component) if len(values) else []
    results: list[list[dict]] = [[] for _ in range(count)]
    for index, obj in zip(image_of.tolist(), found):
        results[index].append(obj)
    for objects in results:
        objects.sort(key=lambda obj: obj.pop("_key"))
    return results


def analyze_shapes(images, batch: int = 1024) -> list[list[dict]]:
    """Read square (N, 3, H, H) images in [-1, 1] back into scenes: per image a list of object dicts
    (shape, colour, position, size) in reading order. Deterministic; no learned model."""
    images = torch.as_tensor(images).detach().to(cpu(), torch.float32)
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3]:
        raise UnnoiseError(f"analyze_shapes expects (N, 3, H, H) RGB images, got {tuple(images.shape)}")
    results: list[list[dict]] = []
    for chunk in images.split(batch):
        results.extend(_analyze_batch(chunk))
    return results


def score_against(scenes, analyses) -> dict[str, float]:
    """Per-attribute accuracy of `analyses` against the true `scenes`, matching objects by position:
    a true object with no analysed object at its position counts as wrong on every attribute.
    Also "count" (right number of objects) and "scene" (everything right) per image."""
    scenes, analyses = list(scenes), list(analyses)
    if len(scenes) != len(analyses) or not scenes:
        raise UnnoiseError(f"score_against: {len(scenes)} scenes for {len(analyses)} analyses")
    hits = {"shape": 0, "colour": 0, "position": 0, "size": 0}
    objects = counted = perfect = 0
    for scene, found in zip(scenes, analyses):
        at = {obj["position"]: obj for obj in found}
        right = len(found) == len(scene)
        counted += right
        for obj in scene:
            objects += 1
            match = at.get(obj["position"])
            hits["position"] += match is not None
            for key in ("shape", "colour", "size"):
                good = match is not None and match[key] == obj[key]
                hits[key] += good
                right = right and good
        perfect += right
    scores = {key: value / max(objects, 1) for key, value in hits.items()}
    scores.update(count=counted / len(scenes), scene=perfect / len(scenes), objects=float(objects))
    return scores
