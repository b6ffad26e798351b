"""Audio: WAV I/O, resampling, spectrograms, pitch detection, the tones dataset, audiofolder and the CLI."""
import json
import logging
import math

import numpy as np
import pytest
import torch

pytest.importorskip("soundfile")

from unnoise.audio.pitch import (detect_f0, frequency_of_midi, midi_of_name, name_of_midi,  # noqa: E402
                                 pitch_class_matches)
from unnoise.audio.spectrogram import log_mel, logmel_features, mel_filterbank  # noqa: E402
from unnoise.audio.wav import fit_length, peak_normalize, read_wav, resample, to_mono, write_wav  # noqa: E402
from unnoise.cli.main import main  # noqa: E402
from unnoise.data import load_dataset  # noqa: E402
from unnoise.errors import UnnoiseError  # noqa: E402
from unnoise.io.audio import save_spectrogram_grid  # noqa: E402


def _sine(frequency, rate, length, phase=0.0):
    return torch.sin(2 * math.pi * frequency * torch.arange(length, dtype=torch.float64) / rate + phase)


def test_pcm16_round_trip_is_lossless(tmp_path):
    codes = torch.randint(-32768, 32768, (2, 3001), generator=torch.Generator().manual_seed(0))
    clip = codes.to(torch.float32) / 32768
    path = write_wav(tmp_path / "a" / "clip.wav", clip, 11025)
    back, rate = read_wav(path)
    assert rate == 11025 and back.dtype == torch.float32 and torch.equal(back, clip)
    assert [p.name for p in path.parent.iterdir()] == ["clip.wav"]  # no temporary file left behind
    mono, _ = read_wav(write_wav(tmp_path / "m.wav", clip[0], 8000))
    assert mono.shape == (1, 3001) and torch.equal(mono[0], clip[0])


def test_wav_errors_name_the_file(tmp_path):
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    with pytest.raises(UnnoiseError, match="notes.wav: not a readable audio file"):
        read_wav(text)
    with pytest.raises(UnnoiseError, match="no such audio file"):
        read_wav(tmp_path / "missing.wav")
    with pytest.raises(UnnoiseError, match="NaN"):
        write_wav(tmp_path / "bad.wav", torch.tensor([0.0, float("nan")]), 8000)
    assert not (tmp_path / "bad.wav").exists()


def test_resample_matches_the_band_limited_signal():
    down = resample(_sine(440, 16000, 16000), 16000, 8000)
    assert down.shape == (8000,)
    interior = slice(200, -200)
    assert (down - _sine(440, 8000, 8000))[interior].abs().max() < 2e-3
    up = resample(_sine(300, 8000, 4000), 8000, 22050)
    assert up.shape == (math.ceil(4000 * 22050 / 8000),)
    assert (up - _sine(300, 22050, up.shape[0]))[500:-500].abs().max() < 2e-3
    above_nyquist = resample(_sine(3500, 16000, 16000), 16000, 4000)  # new Nyquist 2 kHz: filtered out
    assert above_nyquist[200:-200].pow(2).mean().sqrt() < 0.01
    same = torch.randn(3, 100)
    assert resample(same, 8000, 8000) is same


def test_mono_peak_and_length():
    stereo = torch.stack([torch.ones(10), -torch.ones(10) * 0.5])
    assert torch.allclose(to_mono(stereo), torch.full((1, 10), 0.25))
    batch = torch.stack([torch.linspace(-2, 1, 50)[None], torch.zeros(1, 50)])
    normal = peak_normalize(batch, 0.5)
    assert normal[0].abs().max() == pytest.approx(0.5) and torch.equal(normal[1], batch[1])
    assert fit_length(torch.arange(5.0), 3).tolist() == [0, 1, 2]
    assert fit_length(torch.arange(2.0), 4).tolist() == [0, 1, 0, 0]


def test_note_names_and_frequencies():
    assert midi_of_name("C4") == 60 and midi_of_name("A4") == 69 and midi_of_name("Bb2") == 46
    assert midi_of_name("F#3") == 54 and name_of_midi(61) == "C#4" and frequency_of_midi(69) == 440.0
    assert frequency_of_midi(81) == pytest.approx(880.0)
    with pytest.raises(UnnoiseError, match="not a note name"):
        midi_of_name("H2")


def test_yin_finds_the_fundamental_even_when_a_harmonic_is_stronger():
    rate = 8000
    for frequency in (110.0, 261.63, 440.0, 987.77):
        weak_fundamental = 0.3 * _sine(frequency, rate, 4096) + _sine(2 * frequency, rate, 4096, 1.0) \
            + 0.6 * _sine(3 * frequency, rate, 4096, 2.0)
        f0 = detect_f0(weak_fundamental[None, None].float(), rate)
        assert f0.shape == (1, 1) and abs(float(f0) / frequency - 1) < 0.01  # 17 cents; a semitone is 6%
    assert torch.isnan(detect_f0(torch.zeros(1, 4096), rate)).all()
    matches = pitch_class_matches(torch.tensor([261.0, 523.0, 277.0, float("nan")]), torch.tensor([60, 60, 60, 60]))
    assert matches.tolist() == [True, True, False, False]  # octave errors forgiven, semitone errors not


def test_tones_dataset_labels_and_pitches():
    data = load_dataset("tones", n=96)
    assert data.x.shape == (96, 1, 4096) and data.sample_rate == 8000 and data.num_classes == 12
    assert data.class_names[0] == "C4" and data.class_names[-1] == "B4"
    assert torch.bincount(data.labels).tolist() == [8] * 12
    assert torch.bincount(data.instruments).tolist() == [24] * 4
    assert data.x.abs().max() <= 0.9 and data.x.abs().amax(dim=(1, 2)).min() >= 0.5 - 1e-6
    assert pitch_class_matches(detect_f0(data.x, 8000), data.midi).all()
    again, test = load_dataset("tones", n=96), load_dataset("tones", split="test", n=96)
    assert torch.equal(again.x, data.x) and not torch.equal(test.x, data.x)
    note = load_dataset("tones", n=48, label="note", instruments="flute,pluck")
    assert note.num_classes == 24 and note.class_names[:2] == ["C4/flute", "C4/pluck"]
    with pytest.raises(UnnoiseError, match="above 0.45"):
        load_dataset("tones", n=12, lowest="C7", sample_rate=8000)
    with pytest.raises(UnnoiseError, match="tones instrument"):
        load_dataset("tones", n=12, instruments="kazoo")


def test_spectrogram_features_and_picture(tmp_path):
    bank = mel_filterbank(32, 512, 8000)
    assert bank.shape == (32, 257) and (bank >= 0).all() and (bank.max(dim=1).values > 0.5).all()
    mel = log_mel(_sine(1000, 8000, 4096)[None].float(), 8000, n_mels=32)
    centres = 700 * (10 ** (np.linspace(0, 2595 * np.log10(1 + 4000 / 700), 34)[1:-1] / 2595) - 1)
    assert int(mel[0].mean(-1).argmax()) == int(np.abs(centres - 1000).argmin())
    assert logmel_features(torch.randn(5, 1, 4096), 8000, 16).shape == (5, 32)
    path = save_spectrogram_grid(torch.randn(5, 1, 1024) * 0.1, tmp_path / "g.png", n_fft=128, scale=1)
    from PIL import Image

    with Image.open(path) as picture:
        assert picture.size == (3 * (33 + 2) + 2, 2 * (65 + 2) + 2)


def test_audiofolder_reports_and_skips_bad_files(tmp_path, caplog):
    for label, frequency in (("low", 220.0), ("high", 440.0)):
        for i in range(2):
            write_wav(tmp_path / label / f"{i}.wav", 0.5 * _sine(frequency, 16000, 12000), 16000)
    write_wav(tmp_path / "high" / "stereo.wav", torch.stack([_sine(440, 22050, 9000)] * 2) * 0.3, 22050)
    (tmp_path / "low" / "broken.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    (tmp_path / "high" / "readme.txt").write_text("hello")
    with caplog.at_level(logging.WARNING, logger="unnoise.data"):
        data = load_dataset("audiofolder", path=str(tmp_path), sample_rate=8000, length=4096)
    assert data.x.shape == (5, 1, 4096) and data.class_names == ["high", "low"] and data.sample_rate == 8000
    assert sorted(p.split("/")[-1] for p in data.skipped) == ["broken.wav", "readme.txt"]
    assert "broken.wav" in caplog.text and "readme.txt" in caplog.text
    assert data.x.abs().amax(dim=(1, 2)).sub(0.95).abs().max() < 1e-5
    f0 = detect_f0(data.x, 8000).reshape(-1)
    expected = torch.tensor([440.0 if label == 0 else 220.0 for label in data.labels.tolist()], dtype=torch.float64)
    assert ((f0 / expected - 1).abs() < 0.01).all()
    with pytest.raises(UnnoiseError, match="no readable audio files"):
        (tmp_path / "empty").mkdir()
        load_dataset("audiofolder", path=str(tmp_path / "empty"))


TINY_TONES = ["--set", "data.options.n=24", "--set", "model.network_options.base_channels=8",
              "--set", "model.network_options.groups=4", "--set", "model.network_options.channel_mult=[1,2]",
              "--set", "train.sample_every=0", "--set", "train.checkpoint_every=0", "--set", "train.batch_size=8",
              "--set", "sample.steps=2"]


@pytest.fixture(scope="module")
def tones_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "tones"
    assert main(["train", "--preset", "tones", "--steps", "2", "--out", str(run), *TINY_TONES]) == 0
    return run


def test_sample_command_writes_wavs_and_spectrograms(tones_run, tmp_path, capsys):
    fixed = ["--sampler", "heun"]  # (auto calibrates its grid first: tested elsewhere)
    assert main(["sample", str(tones_run), "--class", "C4", "--n", "1", "--out", str(tmp_path / "note.wav"), *fixed]) == 0
    clip, rate = read_wav(tmp_path / "note.wav")
    assert rate == 8000 and clip.shape == (1, 4096) and (tmp_path / "note.png").is_file()
    assert main(["sample", str(tones_run), "--class", "3", "--n", "3", "--out", str(tmp_path / "b.wav"), *fixed]) == 0
    assert sorted(p.name for p in tmp_path.glob("b*")) == ["b-000.wav", "b-001.wav", "b-002.wav", "b.png"]
    capsys.readouterr()
    assert main(["sample", str(tones_run), "--class", "H9", "--out", str(tmp_path / "x.wav")]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "C4, C#4, D4" in error[0]


def test_wav_output_needs_an_audio_run(tmp_path, capsys):
    run = tmp_path / "toy"
    assert main(["train", "--preset", "toy2d", "--steps", "2", "--out", str(run), "--set", "train.sample_every=0",
                 "--set", "model.network_options.hidden=16", "--set", "model.network_options.depth=1"]) == 0
    capsys.readouterr()
    assert main(["sample", str(run), "--out", str(tmp_path / "x.wav")]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "points samples cannot be written with suffix '.wav'" in error[0]


def test_default_sampler_calibrates_on_long_signals_at_reduced_effort(tones_run, tmp_path):
    from unnoise.sample.auto.cache import calibration_effort

    assert calibration_effort((2,))["sweeps"] == 4 and calibration_effort((1, 8, 8))["batch"] == 64
    assert calibration_effort((1, 4096)) == dict(batch=16, sweeps=0, pool_factor=2)
    assert main(["sample", str(tones_run), "--sampler", "auto", "--nfe", "2", "--class", "C4", "--n", "1",
                 "--out", str(tmp_path / "auto.wav")]) == 0
    saved = json.loads((tones_run / "calibration-2.json").read_text())
    assert saved["solver"] != "fitted_start"  # a class-conditional run makes every call
    assert saved["solver"].startswith(("pc", "fitted")) and len(saved["sigmas"]) == 3 and saved["sigmas"][-1] == 0
    assert (tmp_path / "auto.wav").is_file()
