"""Control images (unnoise/control/, conditions/control.py): Canny edges of exactly known images, the edge F1
and mean IoU on hand-counted cases, segmentation maps of the renderers, fitting a user's image, and the
control condition's part, null, dropout and request."""
import pytest
import torch

from unnoise.conditions import ControlCondition
from unnoise.conditions.control import CONTROL_SLOTS
from unnoise.control import canny, edge_f1, mean_iou, sketch
from unnoise.control.images import fit_control
from unnoise.control.segmentation import colour_map, palette_of, pooled_mean_iou, read_classes, shapes_classes
from unnoise.data.landscapes import load_landscapes
from unnoise.data.shapes import load_shapes
from unnoise.errors import UnnoiseError


def _square(size=16, lo=4, hi=12):
    image = -torch.ones(1, 3, size, size)
    image[..., lo:hi, lo:hi] = 1.0
    return image


def test_canny_of_a_flat_image_is_empty_and_of_a_square_is_its_outline():
    assert canny(torch.zeros(2, 3, 16, 16)).sum() == 0
    edges = canny(_square(), sigma=0.0)[0, 0]
    # steps between pixels 3|4 and 11|12; both pixels of a step have the same gradient and the later one is
    # kept: the outline runs along rows and columns 4 and 12 (its far corners cut by the diagonal sectors)
    expected = torch.zeros(16, 16)
    expected[4, 4:12] = expected[4:12, 4] = expected[5:11, 12] = expected[12, 5:11] = 1
    expected[11, 11] = 1
    assert torch.equal(edges, expected)
    side = slice(6, 10)  # away from the corners the unit step's gradient magnitude is exactly 1
    assert canny(_square(), sigma=0.0, low=1.0, high=1.0)[0, 0, 4, side].sum() == 4
    assert canny(_square(), sigma=0.0, low=1.001, high=1.001)[0, 0, 4, side].sum() == 0


def test_hysteresis_keeps_weak_edges_connected_to_strong_ones():
    image = -torch.ones(1, 3, 16, 24)
    image[..., :, 4:] = 0.0   # a strong step (height 0.5 in grey levels) at column 4
    image[..., 6:, 12:] = 0.2  # a weak step (0.1) touching nothing strong, at column 12
    edges = canny(image, sigma=0.0, low=0.04, high=0.2)[0, 0]
    assert edges[:, 3:5].sum() >= 16 and edges[:, 10:14].sum() == 0
    assert canny(image, sigma=0.0, low=0.04, high=0.04)[0, 0][:, 11:13].sum() > 0


def test_edge_f1_counts():
    target = torch.zeros(1, 1, 8, 8)
    target[..., 2, 1:7] = 1  # 6 pixels
    found = torch.zeros(1, 1, 8, 8)
    found[..., 3, 1:4] = 1  # 3 pixels, all within 1 pixel of the target
    found[..., 6, 6] = 1  # 1 pixel far away
    precision, recall = 3 / 4, 4 / 6  # target pixels within 1 of a found one: columns 1..4 of row 2
    assert edge_f1(found, target).item() == pytest.approx(2 * precision * recall / (precision + recall), rel=1e-6)
    assert edge_f1(found, target, tolerance=0).item() == 0
    assert edge_f1(torch.zeros_like(found), torch.zeros_like(target)).item() == 1


def test_mean_iou_counts():
    target = torch.tensor([[[0, 0, 1, 1]]])
    found = torch.tensor([[[0, 1, 1, 2]]])
    # class 0: 1/2, class 1: 1/3, class 2: 0/1
    assert mean_iou(found, target, 3).item() == pytest.approx((1 / 2 + 1 / 3 + 0) / 3)
    assert mean_iou(target, target, 3).item() == 1
    # pooled over two images: class 0 intersects in 1 + 1 pixels of a union of 2 + 2, class 1 in 1 + 2 of 3 + 3;
    # class 2 is only found, never a target, so it is left out of the average
    found2, target2 = torch.tensor([[[1, 1, 0, 0]]]), torch.tensor([[[1, 1, 0, 1]]])
    pooled = pooled_mean_iou(torch.cat([found, found2]), torch.cat([target, target2]), 3)
    assert pooled == pytest.approx((2 / 4 + 3 / 6) / 2)
    assert pooled_mean_iou(torch.cat([found, found2]), torch.cat([found, found2]), 3) == 1


def test_segmentation_maps_round_trip_through_colours():
    data = load_landscapes(size=32, n=3)
    palette = palette_of("landscapes")
    classes = data.segmentation.long()
    assert torch.equal(read_classes(colour_map(classes, palette), palette), classes)
    shapes = load_shapes(size=32, n=4, objects="1")
    found = shapes_classes(shapes.x)
    assert set(found.unique().tolist()) - {0} and found[:, 0, 0].eq(0).all()  # objects coloured, corners background
    with pytest.raises(UnnoiseError, match="segmentation"):
        palette_of("digits")


def test_fit_control_modes_sizes_and_errors():
    grey = torch.rand(1, 8, 8)
    assert torch.equal(fit_control(grey, 3, (8, 8)), grey.expand(3, 8, 8))
    rgb = torch.rand(3, 8, 8)
    assert torch.equal(fit_control(rgb, 1, (8, 8)), rgb.mean(0, keepdim=True))
    assert torch.equal(fit_control(grey.repeat_interleave(2, 1).repeat_interleave(2, 2), 1, (8, 8)), grey)
    with pytest.raises(UnnoiseError, match="aspect ratio"):
        fit_control(torch.rand(1, 8, 16), 1, (8, 8))
    with pytest.raises(UnnoiseError, match=r"\[0, 1\]"):
        fit_control(grey * 2, 1, (8, 8))


def test_control_condition_parts():
    data = load_shapes(size=16, n=6)
    condition = ControlCondition("edges", (3, 16, 16), data)
    part = condition.from_batch({"x": data.x, "index": torch.arange(6)})
    assert part["images"].shape == (6, CONTROL_SLOTS, 1, 16, 16)
    assert torch.equal(part["images"][:, 0], canny(data.x)) and part["images"][:, 1:].eq(0).all()
    assert torch.equal(part["scales"], torch.tensor([[1.0, 0, 0, 0]]).expand(6, -1))
    assert condition.null(3)["scales"].eq(0).all()
    dropped = condition.dropout(part, 0.5, torch.Generator().manual_seed(0))
    kept = ~(torch.rand(6, generator=torch.Generator().manual_seed(0)) < 0.5)
    assert torch.equal(dropped["scales"][:, 0], kept.float()) and torch.equal(dropped["images"], part["images"])
    request = condition.from_request({"images": [torch.rand(1, 32, 32), torch.rand(3, 16, 16)], "scales": [1, 0.5]}, 2)
    assert request["images"].shape == (2, CONTROL_SLOTS, 1, 16, 16)
    assert torch.equal(request["scales"][0], torch.tensor([1.0, 0.5, 0, 0]))
    with pytest.raises(UnnoiseError, match="images and"):
        condition.from_request({"images": [torch.rand(1, 16, 16)] * 5}, 1)
    assert sketch(data.x).shape == (6, 1, 16, 16)
    with pytest.raises(UnnoiseError, match="control_kind"):
        ControlCondition("depth", (3, 16, 16))


def test_generated_shapes_are_read_back_through_speckle_noise():
    from unnoise.control.segmentation import analyzed_classes

    x = load_shapes(size=32, n=32, objects="1", split="test").x
    truth = shapes_classes(x)
    noisy = (x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    assert pooled_mean_iou(analyzed_classes(x, "shapes"), truth, 7) > 0.9  # the mode filter's cost on renders
    filtered = pooled_mean_iou(analyzed_classes(noisy, "shapes"), truth, 7)
    assert filtered > 0.85 and pooled_mean_iou(shapes_classes(noisy), truth, 7) < 0.6
