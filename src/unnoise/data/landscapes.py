"""Procedurally rendered landscapes with captions and exact segmentation maps, for latent diffusion.

Each (3, size, size) RGB image in [-1, 1] (size 32, 64 or 128) is drawn from scene parameters that
depend only on (seed, split, index), so image i is the same whatever `n` is. A scene has:
- a sky gradient by time of day ("day", "sunset", "night");
- the sun (day, sunset) or the moon (night) on the left or the right, or no body at all;
- optional clouds (1-3, each a few elliptical puffs) high in the sky;
- 1-3 mountain ridges, farther ones higher and paler, with fractal ridge lines (a sum of random
  sinusoid octaves with amplitude 2^(-o H), the spectrum of fractional Brownian motion) and
  optional snow caps above a per-ridge snow line;
- an optional tree line standing on the horizon;
- below the horizon either a lake, which mirrors the scene about the horizon, tinted, or ground.

Pixels are sampled at their centres without anti-aliasing, so every pixel has exactly the colour
of one class of `SEGMENT_CLASSES`: `dataset.segmentation` is exact, and `class_colours` gives the
colour of every class in every row, which the analyzer (`landscape_analyzer.py`) inverts.

Compositional splits: the attribute combinations of `HELDOUT_COMBINATIONS` never occur in "train"
("all" is "train") nor "test" (another random stream); every "heldout" scene shows one of them.
"""
from __future__ import annotations


import numpy as np
import torch

from unnoise.data.base import ArrayDataset, choice, positive_int, seed_int, size_of

TIMES = ("day", "sunset", "night")
SEGMENT_CLASSES = ("sky", "sun_moon", "cloud", "mountain", "snow", "water", "trees", "ground")
SKY, BODY, CLOUD, MOUNTAIN, SNOW, WATER, TREES, GROUND = range(len(SEGMENT_CLASSES))
SIZES = (32, 64, 128)
SPLITS = ("all", "train", "test", "heldout")
SPLIT_STREAM = {"all": 0, "train": 0, "test": 1, "heldout": 2}
HELDOUT_COMBINATIONS = ({"time": "sunset", "snow": True}, {"time": "night", "lake": True})

PALETTE = {  # RGB in [0, 1] per time of day; mountains listed nearest ridge first
    "sky_top": ((0.20, 0.42, 0.85), (0.28, 0.16, 0.45), (0.02, 0.03, 0.12)),
    "sky_bottom": ((0.62, 0.80, 0.97), (0.98, 0.55, 0.25), (0.16, 0.22, 0.45)),
    "body": ((1.00, 0.93, 0.45), (1.00, 0.88, 0.55), (0.95, 0.95, 0.85)),
    "cloud": ((1.00, 1.00, 1.00), (0.95, 0.60, 0.68), (0.36, 0.38, 0.48)),
    "mountain": (((0.30, 0.31, 0.36), (0.42, 0.46, 0.55), (0.55, 0.61, 0.74)),
                 ((0.26, 0.15, 0.26), (0.42, 0.26, 0.40), (0.58, 0.38, 0.52)),
                 ((0.11, 0.11, 0.20), (0.20, 0.21, 0.34), (0.29, 0.31, 0.47))),
    "snow": ((0.90, 0.93, 1.00), (1.00, 0.82, 0.82), (0.66, 0.70, 0.84)),
    "trees": ((0.10, 0.36, 0.15), (0.10, 0.22, 0.08), (0.02, 0.22, 0.12)),
    "ground": ((0.38, 0.58, 0.22), (0.45, 0.32, 0.18), (0.10, 0.17, 0.07)),
    "water": ((0.05, 0.35, 0.55), (0.60, 0.32, 0.30), (0.10, 0.22, 0.45)),
}
SKY_SPAN = 0.7  # the sky gradient runs from sky_top at y = 0 to sky_bottom at y = SKY_SPAN
GROUND_SHADE = (1.05, 0.35)  # ground(y) = ground * (1.05 - 0.35 y)
REFLECTION = (0.65, 0.30)  # water = a * mirrored + (1 - a) * water tint, a = 0.65 - 0.30 * depth
UPPER_SKY = 0.30  # the sun, the moon and clouds lie above this height; mountain tops below it
MOUNTAIN_TOP = 0.33
HORIZON = (0.62, 0.78)  # range of the horizon height (fraction of the image from the top)
RIDGE_GAP = 0.05  # every ridge line stays this far above the horizon
TREE_BASE, TREE_HEIGHT, TREE_COUNT = 0.025, (0.04, 0.08), 24
OCTAVES, HURST = 6, 0.9
CLOUD_PUFFS = 4
CLOUD_GAP = 0.04  # clear sky kept between a cloud and the sun or moon
SNOW_DEPTH = 0.4  # snow covers the top SNOW_DEPTH of a ridge's visible height range

_LAYOUT = {  # uniform draws per scene, by use
    "time": 1, "body": 1, "side": 1, "body_xyr": 3, "ridges": 1, "ridge_top": 1, "ridge_step": 3,
    "ridge_amp": 3, "ridge_coef": 3 * OCTAVES * 2, "ridge_freq": 3, "snow": 1, "lake": 1, "trees": 1,
    "tree_jitter": TREE_COUNT, "tree_height": TREE_COUNT, "clouds": 1, "cloud_count": 1,
    "cloud_xy": 3 * 2, "puffs": 3 * CLOUD_PUFFS * 3, "horizon": 1, "style": 1, "combination": 1,
}
_OFFSETS = dict(zip(_LAYOUT, np.cumsum([0] + list(_LAYOUT.values()))[:-1].tolist()))
DRAWS = sum(_LAYOUT.values())


def _column(draws: np.ndarray, name: str) -> np.ndarray:
    """The uniforms drawn for `name`: (N,) for one draw, (N, k) for several."""
    start, count = _OFFSETS[name], _LAYOUT[name]
    return draws[:, start] if count == 1 else draws[:, start:start + count]


def draw_uniforms(indices, split: str, seed: int) -> np.ndarray:
    """(N, DRAWS) uniforms in [0, 1); row i depends only on (seed, split stream, indices[i])."""
    stream = SPLIT_STREAM[split]
    return np.stack([np.random.default_rng([seed, stream, int(i)]).random(DRAWS) for i in indices])


# ---- scene attributes ------------------------------------------------------------------------


def _apply_split(attrs: dict[str, np.ndarray], combination: np.ndarray, split: str) -> None:
    """Train/test: a scene matching a held-out combination has its last listed attribute flipped.
    Heldout: every scene is forced onto one combination (chosen by `combination`)."""
    if split == "heldout":
        which = np.minimum((combination * len(HELDOUT_COMBINATIONS)).astype(int), len(HELDOUT_COMBINATIONS) - 1)
        for index, combo in enumerate(HELDOUT_COMBINATIONS):
            for key, value in combo.items():
                target = TIMES.index(value) if key == "time" else value
                attrs[key] = np.where(which == index, target, attrs[key])
        return
    for combo in HELDOUT_COMBINATIONS:
        match = np.ones(len(combination), dtype=bool)
        for key, value in combo.items():
            match &= attrs[key] == (TIMES.index(value) if key == "time" else value)
        last = list(combo)[-1]
        attrs[last] = np.where(match, not combo[last], attrs[last])


def scene_attributes(draws: np.ndarray, split: str) -> dict[str, np.ndarray]:
    """Discrete attributes as arrays: time (index into TIMES), body (bool), side (0 left, 1 right),
    ridges (1-3), snow, lake, trees, clouds (bools), cloud_count (1-3), style (0-4)."""
    level = lambda name, k: np.minimum((_column(draws, name) * k).astype(np.int64), k - 1)  # noqa: E731
    attrs = {
        "time": level("time", 3), "body": _column(draws, "body") < 0.85, "side": level("side", 2),
        "ridges": level("ridges", 3) + 1, "snow": _column(draws, "snow") < 0.5,
        "lake": _column(draws, "lake") < 0.5, "trees": _column(draws, "trees") < 0.5,
        "clouds": _column(draws, "clouds") < 0.5, "cloud_count": level("cloud_count", 3) + 1,
        "style": level("style", len(CAPTION_STYLES)),
    }
    _apply_split(attrs, _column(draws, "combination"), split)
    attrs["clouds"] = _puffs(draws, attrs)[-1].any((1, 2))  # clouds near the sun or moon are left out
    return attrs


def is_heldout(attributes: dict) -> bool:
    """True when a scene's attribute dict matches one of HELDOUT_COMBINATIONS."""
    return any(all(attributes[key] == value for key, value in combo.items()) for combo in HELDOUT_COMBINATIONS)


# ---- colours ---------------------------------------------------------------------------------


def palette_colour(name: str, times: torch.Tensor) -> torch.Tensor:
    """Colours (N, 3) of palette entry `name` for each time index (mountains: (N, 3 ridges, 3))."""
    return torch.tensor(PALETTE[name], dtype=torch.float32)[times]


def sky_colour(times: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Sky gradient (N, 3, Y) at heights ys (Y,) for each time index."""
    t = (ys / SKY_SPAN).clamp(0.0, 1.0).view(1, 1, -1)
    top, bottom = palette_colour("sky_top", times).unsqueeze(2), palette_colour("sky_bottom", times).unsqueeze(2)
    return top + (bottom - top) * t


def ground_colour(times: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Ground (N, 3, Y) at heights ys (Y,): the ground colour, darker towards the bottom."""
    shade = GROUND_SHADE[0] - GROUND_SHADE[1] * ys.view(1, 1, -1)
    return palette_colour("ground", times).unsqueeze(2) * shade


def reflect(pixels: torch.Tensor, horizon_rows: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """The lake below each image's horizon row h: row r >= h becomes a * row (2h - 1 - r) +
    (1 - a) * water tint, a = 0.65 - 0.30 (r - h) / size. pixels (N, 3, S, S) -> (N, 3, S, S)."""
    count, _, size, _ = pixels.shape
    rows = torch.arange(size).view(1, -1)
    below = rows >= horizon_rows.view(-1, 1)  # (N, S)
    mirror = (2 * horizon_rows.view(-1, 1) - 1 - rows).clamp(0, size - 1)  # (N, S) source row
    mirrored = pixels.gather(2, mirror.view(count, 1, size, 1).expand(-1, 3, -1, size))
    depth = (rows - horizon_rows.view(-1, 1)).clamp(min=0).float() / size
    a = (REFLECTION[0] - REFLECTION[1] * depth).view(count, 1, size, 1)
    water = a * mirrored + (1 - a) * palette_colour("water", times).view(count, 3, 1, 1)
    return torch.where(below.view(count, 1, size, 1), water, pixels)


def class_colours(times: torch.Tensor, size: int) -> torch.Tensor:
    """Colour of every above-horizon class in every row: (N, K, 3, S) for K = sky, sun_moon, cloud,
    mountain (nearest), mountain (middle), mountain (farthest), snow, trees."""
    ys = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    flat = [palette_colour(name, times) for name in ("body", "cloud")]
    ridges = palette_colour("mountain", times).unbind(1)
    rows = [sky_colour(times, ys)] + [c.unsqueeze(2).expand(-1, -1, size)
                                       for c in (*flat, *ridges, palette_colour("snow", times), palette_colour("trees", times))]
    return torch.stack(rows, dim=1)


ABOVE_CLASSES = (SKY, BODY, CLOUD, MOUNTAIN, MOUNTAIN, MOUNTAIN, SNOW, TREES)  # rows of class_colours


# ---- geometry --------------------------------------------------------------------------------


def _ridge_lines(draws: np.ndarray, attrs, horizon: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Ridge heights (N, 3, X) at columns xs, nearest ridge first; absent ridges are at +inf.
    Each line is top + amplitude * (1 - f), f a fractal profile normalised to [0, 1]."""
    count = len(draws)
    coef = _column(draws, "ridge_coef").reshape(count, 3, OCTAVES, 2) * 2 - 1
    freq = 1.0 + _column(draws, "ridge_freq").reshape(count, 3, 1, 1)  # 1-2 cycles per width
    octave = np.arange(OCTAVES).reshape(1, 1, -1, 1)
    phase = 2 * np.pi * freq * 2.0**octave * xs.reshape(1, 1, 1, -1)
    weight = 2.0 ** (-octave * HURST)
    profile = (weight * (coef[..., 0:1] * np.cos(phase) + coef[..., 1:2] * np.sin(phase))).sum(2)
    low, high = profile.min(2, keepdims=True), profile.max(2, keepdims=True)
    profile = (profile - low) / np.maximum(high - low, 1e-9)
    depth = np.arange(3).reshape(1, 3)  # 0 = nearest
    below_farthest = depth < attrs["ridges"][:, None] - 1  # ridges in front of the farthest one
    step = np.where(below_farthest, 0.03 + 0.03 * _column(draws, "ridge_step"), 0.0)
    top = MOUNTAIN_TOP + 0.05 * _column(draws, "ridge_top")[:, None] + step[:, ::-1].cumsum(1)[:, ::-1]
    amplitude = 0.12 + 0.08 * _column(draws, "ridge_amp")
    lines = top[..., None] + amplitude[..., None] * (1.0 - profile)
    lines = np.minimum(lines, horizon.reshape(-1, 1, 1) - RIDGE_GAP)
    return np.where((depth < attrs["ridges"][:, None])[..., None], lines, np.inf)


def _tree_line(draws: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Tree-line height above the horizon (N, X): a base band plus conifer triangles."""
    centres = (np.arange(TREE_COUNT) + 0.2 + 0.6 * _column(draws, "tree_jitter")) / TREE_COUNT
    heights = TREE_HEIGHT[0] + (TREE_HEIGHT[1] - TREE_HEIGHT[0]) * _column(draws, "tree_height")
    cones = heights[..., None] - 2.5 * np.abs(xs.reshape(1, 1, -1) - centres[..., None])
    return np.maximum(cones.max(1), TREE_BASE)


def _body_geometry(draws: np.ndarray, side: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre x, y and radius (N,) of the sun or moon: x in [0.15, 0.35], mirrored on the right."""
    bx, by, br = _column(draws, "body_xyr").T
    x = 0.15 + 0.20 * bx
    return np.where(side == 1, 1.0 - x, x), 0.12 + 0.08 * by, 0.055 + 0.02 * br


def _puffs(draws: np.ndarray, attrs) -> tuple[np.ndarray, ...]:
    """Puff ellipses (N, 3 clouds, P): centre x, y, radii x, y, and whether drawn. Puffs of absent
    clouds and puffs within CLOUD_GAP of the sun or moon are not drawn."""
    count = len(draws)
    centre = _column(draws, "cloud_xy").reshape(count, 3, 1, 2)
    puffs = _column(draws, "puffs").reshape(count, 3, CLOUD_PUFFS, 3)
    cx = 0.1 + 0.8 * centre[..., 0] + 0.16 * (puffs[..., 0] - 0.5)
    cy = 0.12 + 0.10 * centre[..., 1] + 0.04 * (puffs[..., 1] - 0.5)
    rx = 0.04 + 0.04 * puffs[..., 2]
    ry = np.minimum(0.5 * rx, UPPER_SKY - 0.005 - cy)
    drawn = attrs["clouds"][:, None, None] & (np.arange(3)[None, :, None] < attrs["cloud_count"][:, None, None])
    bx, by, br = (v[:, None, None] for v in _body_geometry(draws, attrs["side"]))
    clear = np.hypot(cx - bx, cy - by) > br + 0.08 + CLOUD_GAP
    return cx, cy, rx, ry, drawn & (clear | ~attrs["body"][:, None, None])


def _cloud_mask(draws: np.ndarray, attrs, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Union (N, Y, X) of the drawn cloud puffs, all above UPPER_SKY."""
    cx, cy, rx, ry, drawn = (v.reshape(len(draws), -1) for v in _puffs(draws, attrs))
    mask = np.zeros((len(draws), len(ys), len(xs)), dtype=bool)
    for k in np.flatnonzero(drawn.any(0)):
        inside = (((xs[None, None, :] - cx[:, k, None, None]) / rx[:, k, None, None]) ** 2
                  + ((ys[None, :, None] - cy[:, k, None, None]) / ry[:, k, None, None]) ** 2) <= 1
        mask |= inside & drawn[:, k, None, None]
    return mask


def _body_mask(draws: np.ndarray, attrs, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Disc (N, Y, X) of the sun or moon, where there is one."""
    x, y, radius = _body_geometry(draws, attrs["side"])
    inside = (xs[None, None, :] - x[:, None, None]) ** 2 + (ys[None, :, None] - y[:, None, None]) ** 2
    return (inside <= radius[:, None, None] ** 2) & attrs["body"][:, None, None]


# ---- rendering -------------------------------------------------------------------------------


def _slots(draws: np.ndarray, attrs, horizon: np.ndarray, size: int) -> np.ndarray:
    """Above-horizon palette slot (rows of `class_colours`) of every pixel, (N, S, S) int64;
    painted back to front: sky, clouds, body, ridges far to near with snow, trees."""
    grid = (np.arange(size) + 0.5) / size
    xs, ys = grid, grid
    slots = np.zeros((len(draws), size, size), dtype=np.int64)
    slots[_cloud_mask(draws, attrs, xs, ys)] = 2
    slots[_body_mask(draws, attrs, xs, ys)] = 1
    lines = _ridge_lines(draws, attrs, horizon, xs)  # (N, 3, X)
    finite = np.isfinite(lines)
    visible_top = np.where(finite, lines, 1.0).min(2)
    visible_bottom = np.where(finite, lines, 0.0).max(2)
    snowline = visible_top + SNOW_DEPTH * (visible_bottom - visible_top)  # only used where a ridge is
    above = ys[None, :, None] < horizon[:, None, None]
    for depth in (2, 1, 0):
        ridge = (ys[None, :, None] >= lines[:, depth, None, :]) & above
        slots[ridge] = 3 + depth
        snowy = ridge & (ys[None, :, None] < snowline[:, depth, None, None]) & attrs["snow"][:, None, None]
        slots[snowy] = 6
    trees = ys[None, :, None] >= horizon[:, None, None] - _tree_line(draws, xs)[:, None, :]
    slots[trees & above & attrs["trees"][:, None, None]] = 7
    return slots


def render(draws: np.ndarray, attrs, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images (N, 3, S, S) in [-1, 1], segmentation (N, S, S) uint8 (indices into SEGMENT_CLASSES)
    and horizon rows (N,) of the scenes given by uniforms `draws` and their `attrs`."""
    rows = np.rint((HORIZON[0] + (HORIZON[1] - HORIZON[0]) * _column(draws, "horizon")) * size).astype(np.int64)
    slots = torch.from_numpy(_slots(draws, attrs, rows / size, size))
    times, count = torch.from_numpy(attrs["time"]), len(draws)
    colours = class_colours(times, size).permute(0, 2, 3, 1)  # (N, K, 3, S) -> (N, 3, S, K)
    pixels = colours.gather(3, slots.unsqueeze(1).expand(-1, 3, -1, -1))  # (N, 3, S row, S column)
    below = torch.arange(size).view(1, size, 1) >= torch.from_numpy(rows).view(-1, 1, 1)  # (N, S, 1)
    ys = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    ground = ground_colour(times, ys).unsqueeze(3).expand(-1, -1, -1, size)
    pixels = torch.where(below.unsqueeze(1), ground, pixels)
    lake = torch.from_numpy(attrs["lake"])
    pixels = torch.where(lake.view(-1, 1, 1, 1), reflect(pixels, torch.from_numpy(rows), times), pixels)
    segmentation = torch.tensor(ABOVE_CLASSES, dtype=torch.uint8)[slots]
    under = torch.where(lake, WATER, GROUND).to(torch.uint8).view(-1, 1, 1).expand(count, size, size)
    segmentation = torch.where(below.expand(-1, -1, size), under, segmentation)
    return pixels * 2.0 - 1.0, segmentation, torch.from_numpy(rows)


# ---- captions --------------------------------------------------------------------------------

WHEN = {"day": "in the daytime", "sunset": "at sunset", "night": "at night"}
ADJECTIVE = {"day": "daytime", "sunset": "sunset", "night": "night-time"}
NUMBER = {1: "one", 2: "two", 3: "three"}


def _mountains(a: dict, snowy: str = "snowy ") -> str:
    noun = "a mountain" if a["ridges"] == 1 else f"{NUMBER[a['ridges']]} mountain ridges"
    return noun.replace("mountain", snowy + "mountain", 1) if a["snow"] else noun


def _body(a: dict) -> str:
    return f"the {a['body']} on the {a['side']}" if a["body"] != "none" else ""


def _sentence(a: dict) -> str:  # "a snowy mountain at sunset above a lake, with trees, the sun on the left"
    parts = [f"{_mountains(a)} {WHEN[a['time']]}" + (" above a lake" if a["lake"] else "")]
    parts += ["with trees"] * a["trees"] + [_body(a)] * (a["body"] != "none") + ["clouds"] * a["clouds"]
    return ", ".join(parts)


def _tags(a: dict) -> str:  # "night, mountains, no lake, no trees, moon right"
    parts = [a["time"], "snowy mountains" if a["snow"] else "mountains", "lake" if a["lake"] else "no lake",
             "trees" if a["trees"] else "no trees"]
    parts += [f"{a['body']} {a['side']}"] * (a["body"] != "none") + ["cloudy"] * a["clouds"]
    return ", ".join(parts)


def _landscape(a: dict) -> str:  # "a sunset landscape: two snow-capped mountain ridges, a lake and a tree line"
    items = [_mountains(a, "snow-capped ")] + ["a lake"] * a["lake"] + ["a tree line"] * a["trees"]
    text = f"a {ADJECTIVE[a['time']]} landscape: " + (", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else items[0])
    return text + (f"; {_body(a)}" if a["body"] != "none" else "") + ("; a few clouds" if a["clouds"] else "")


def _body_first(a: dict) -> str:  # "the moon on the right over a mountain and a lake at night"
    lead = _body(a) + " over " if a["body"] != "none" else ""
    scene = _mountains(a) + (" and a lake" if a["lake"] else "") + (" with trees" if a["trees"] else "")
    return f"{lead}{scene} {WHEN[a['time']]}" + (", cloudy" if a["clouds"] else "")


def _short(a: dict) -> str:  # "sunset: snowy mountains, lake, trees"
    parts = ["snowy mountains" if a["snow"] else "mountains"] + ["lake"] * a["lake"] + ["trees"] * a["trees"]
    return f"{a['time']}: " + ", ".join(parts)


CAPTION_STYLES = (_sentence, _tags, _landscape, _body_first, _short)


def caption(attributes: dict, style: int = 0) -> str:
    """The scene described in phrasing `style` (0..4); every phrasing names the time of day, snow,
    the lake and the trees (by absence in some)."""
    return CAPTION_STYLES[style % len(CAPTION_STYLES)](attributes)


def attribute_dicts(attrs: dict[str, np.ndarray], horizon_rows: torch.Tensor, size: int) -> list[dict]:
    """Per-scene dicts: time, body ("sun", "moon", "none"), side ("left", "right", "none"), ridges,
    snow, lake, trees, clouds, horizon (fraction of the image height above the horizon)."""
    dicts = []
    for i in range(len(attrs["time"])):
        time = TIMES[int(attrs["time"][i])]
        body = ("moon" if time == "night" else "sun") if attrs["body"][i] else "none"
        dicts.append({
            "time": time, "body": body, "side": ("left", "right")[int(attrs["side"][i])] if body != "none" else "none",
            "ridges": int(attrs["ridges"][i]), "snow": bool(attrs["snow"][i]), "lake": bool(attrs["lake"][i]),
            "trees": bool(attrs["trees"][i]), "clouds": bool(attrs["clouds"][i]),
            "horizon": int(horizon_rows[i]) / size,
        })
    return dicts


# ---- the dataset -----------------------------------------------------------------------------


def _options(size, n, split, seed) -> tuple[int, int, str, int]:
    """Validate the loader's options; each error is one line naming the option."""
    size, n = size_of(size, "landscapes size", SIZES), positive_int(n, "landscapes n")
    split = choice(split, "landscapes split", SPLITS)
    seed = seed_int(seed, "landscapes seed")
    return size, n, split, seed


def render_landscapes(indices, size: int = 64, split: str = "all", seed: int = 0) -> dict:
    """Render the scenes at `indices` of a split: {"images" (N, 3, S, S) in [-1, 1],
    "segmentation" (N, S, S) uint8, "attributes" list of dicts, "captions" list of str}."""
    size, _, split, seed = _options(size, 1, split, seed)
    draws = draw_uniforms(list(indices), split, seed)
    attrs = scene_attributes(draws, split)
    images, segmentation, rows = render(draws, attrs, size)
    attributes = attribute_dicts(attrs, rows, size)
    captions = [caption(a, int(style)) for a, style in zip(attributes, attrs["style"])]
    return {"images": images, "segmentation": segmentation, "attributes": attributes, "captions": captions}


def load_landscapes(size: int = 64, n: int = 4000, split: str = "all", seed: int = 0) -> ArrayDataset:
    """`n` captioned (3, size, size) landscapes (size 32, 64 or 128). `split`: "train" (= "all") and
    "test" never show a combination of HELDOUT_COMBINATIONS, "heldout" always does. Adds `captions`,
    `attributes` (dicts) and `segmentation` ((N, S, S) uint8 indices into SEGMENT_CLASSES)."""
    size, n, split, seed = _options(size, n, split, seed)
    rendered = render_landscapes(range(n), size, split, seed)
    dataset = ArrayDataset(rendered["images"], name="landscapes", modality="image")
    dataset.captions = rendered["captions"]
    dataset.attributes = rendered["attributes"]
    dataset.segmentation = rendered["segmentation"]
    dataset.levels = 0
    return dataset
