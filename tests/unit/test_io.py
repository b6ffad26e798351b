"""Writers: dispatch on the spec's modality (never the tensor's rank), formats by suffix, one-line refusals."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from unnoise.data.spec import DataSpec
from unnoise.errors import UnnoiseError
from unnoise.io import check_samples_path, preview_suffix, write_samples, write_trajectory

Image = pytest.importorskip("PIL.Image")

PNG_MAGIC, JPEG_MAGIC, GIF_MAGIC, WAV_MAGIC = b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF8", b"RIFF"
IMAGE = DataSpec((1, 8, 8), "image")
CLOUD = DataSpec((50, 3), "points")  # 50 points in 3-D per sample: the rank of an audio clip (C, L)
TOKENS = DataSpec((6,), "tokens", dtype="int64", vocab_size=4)  # the rank of a 2-D point (D,)


def _images(n=4):
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1


def _one_line_error(call) -> str:
    with pytest.raises(UnnoiseError) as error:
        call()
    assert "\n" not in str(error.value)
    return str(error.value)


@pytest.mark.parametrize("suffix, magic, image_format", [(".png", PNG_MAGIC, "PNG"), (".jpg", JPEG_MAGIC, "JPEG"),
                                                         (".jpeg", JPEG_MAGIC, "JPEG"), (".JPG", JPEG_MAGIC, "JPEG")])
def test_image_format_follows_the_suffix(tmp_path, suffix, magic, image_format):
    [path] = write_samples(_images(), IMAGE, tmp_path / f"grid{suffix}")
    assert path == tmp_path / f"grid{suffix}" and path.read_bytes()[:len(magic)] == magic
    with Image.open(path) as picture:
        assert picture.format == image_format and picture.size == (2 * 65 + 1, 2 * 65 + 1)  # 8 px x 8, pad 1


def test_unknown_suffix_is_refused_in_one_line_and_writes_nothing(tmp_path):
    message = _one_line_error(lambda: write_samples(_images(), IMAGE, tmp_path / "x.txt"))
    assert "'.txt'" in message and ".png, .jpg, .jpeg" in message and "image samples" in message
    assert "no suffix" in _one_line_error(lambda: write_samples(_images(), IMAGE, tmp_path / "x"))
    assert not list(tmp_path.iterdir())


def test_a_point_cloud_is_never_written_as_audio(tmp_path):
    clouds = torch.randn(4, 50, 3, generator=torch.Generator().manual_seed(1))
    message = _one_line_error(lambda: write_samples(clouds, CLOUD, tmp_path / "c.wav"))
    assert "points samples" in message and "'.wav'" in message
    [path] = write_samples(clouds, CLOUD, tmp_path / "c.png")
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as picture:  # a 2 x 2 grid of scatter tiles, not a spectrogram
        assert picture.size == (2 * 160 + 3 * 2,) * 2 and len(picture.getcolors(maxcolors=65536)) > 2
    gif = write_trajectory([clouds * 3, clouds], CLOUD, tmp_path / "c.gif")
    with Image.open(gif) as picture:
        assert picture.format == "GIF" and picture.n_frames == 2


def test_tokens_are_written_as_text_never_as_a_scatter(tmp_path):
    ids = torch.tensor([[0, 1, 2, 3, 4, 0], [3, 3, 2, 1, 0, 0]])
    assert "tokens samples" in _one_line_error(lambda: write_samples(ids, TOKENS, tmp_path / "t.png"))
    [path] = write_samples(ids, TOKENS, tmp_path / "t.txt")
    assert path.read_text() == "0 1 2 3 4 0\n3 3 2 1 0 0\n"
    write_samples(ids, TOKENS, path, vocabulary=list("abcd"), separator="")
    assert path.read_text() == "abcd[4]a\nddcbaa\n"  # id 4 (a mask id) is outside the vocabulary
    trajectory = write_trajectory([torch.full_like(ids, 4), ids], TOKENS, tmp_path / "steps.txt")
    assert trajectory.read_text().splitlines()[0::3] == ["# step 0", "# step 1"]
    assert "integer ids" in _one_line_error(lambda: write_samples(ids + 0.5, TOKENS, path))


def test_one_audio_clip_is_written_to_exactly_the_path(tmp_path):
    pytest.importorskip("soundfile")
    from unnoise.audio.wav import read_wav

    spec = DataSpec((1, 1024), "audio", sample_rate=8000)
    clips = 0.5 * torch.sin(torch.arange(3 * 1024, dtype=torch.float32) * 0.1).reshape(3, 1, 1024)
    assert write_samples(clips[:1], spec, tmp_path / "note.wav") == [tmp_path / "note.wav"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["note.wav"]
    back, rate = read_wav(tmp_path / "note.wav")
    assert rate == 8000 and back.shape == (1, 1024) and (tmp_path / "note.wav").read_bytes()[:4] == WAV_MAGIC
    names = [p.name for p in write_samples(clips, spec, tmp_path / "batch" / "a4.wav")]
    assert names == ["a4-000.wav", "a4-001.wav", "a4-002.wav"]
    [picture] = write_samples(clips, spec, tmp_path / "a4.jpg")  # the spectrogram grid
    assert picture.read_bytes()[:3] == JPEG_MAGIC
    assert "not audio" in _one_line_error(lambda: write_trajectory([clips], spec, tmp_path / "a.gif"))


def test_image_trajectory_is_a_gif(tmp_path):
    frames = [_images() * scale for scale in (0.0, 0.5, 1.0)]
    assert ".gif" in _one_line_error(lambda: write_trajectory(frames, IMAGE, tmp_path / "steps.png"))
    with Image.open(write_trajectory(frames, IMAGE, tmp_path / "steps.gif")) as picture:
        assert picture.n_frames == 3


def test_video_and_molecule_writers(tmp_path):
    video = DataSpec((3, 5, 8, 8), "video")
    clips = torch.rand(2, 3, 5, 8, 8) * 2 - 1
    with Image.open(write_samples(clips, video, tmp_path / "v.gif")[0]) as picture:
        assert picture.n_frames == 5
    with Image.open(write_samples(clips, video, tmp_path / "v.png")[0]) as picture:
        assert picture.size == (5 * 65 + 1, 2 * 65 + 1)  # one row per clip, one column per frame
    molecule = DataSpec((9, 5), "molecule")
    [path] = write_samples(torch.randn(3, 9, 5), molecule, tmp_path / "m.png")
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_samples_must_match_the_spec(tmp_path):
    message = _one_line_error(lambda: write_samples(torch.zeros(4, 1, 4, 4), IMAGE, tmp_path / "x.png"))
    assert "(N, 1, 8, 8)" in message and "(4, 1, 4, 4)" in message
    with pytest.raises(TypeError):
        write_samples(_images(), (1, 8, 8), tmp_path / "x.png")  # a shape is not a spec


def test_a_config_or_dataset_passes_as_the_spec(tmp_path):
    from unnoise.run.config import RunConfig

    config = RunConfig(data_shape=(1, 8, 8), modality="image")
    assert write_samples(_images(), config, tmp_path / "c.png") == [tmp_path / "c.png"]
    assert check_samples_path(config, tmp_path / "c.JPEG") == ".jpeg"
    assert preview_suffix(TOKENS) == ".txt" and preview_suffix(IMAGE) == ".png"


def test_loss_curve_format_follows_the_suffix(tmp_path):
    from unnoise.io.plots import save_loss_curve

    path = save_loss_curve([0, 10, 20], [1.0, 0.5, 0.25], tmp_path / "loss.jpg")
    assert path.read_bytes()[:3] == JPEG_MAGIC


def test_audio_dsp_does_not_import_the_writers():
    """audio/ is DSP only: importing the writers from it would close a cycle (io/audio.py imports audio/)."""
    audio = Path(__file__).parents[2] / "src" / "unnoise" / "audio"
    for module in audio.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.ImportFrom):
                absolute = node.level == 0 and (node.module or "").startswith("unnoise.io")
                relative = node.level == 2 and (node.module or "").startswith("io")
                assert not (absolute or relative), f"audio/{module.name} imports the writers"
