"""Smoke tests: a few optimizer steps of the masked-diffusion and autoregressive objectives lower the loss."""
import pytest
import torch

from unnoise.data.textfolder import TokenDataset, token_windows
from unnoise.discrete.process import make_process
from unnoise.discrete.sample import prefix_template, sample_tokens
from unnoise.discrete.tokenizer import CharTokenizer
from unnoise.nn.transformer import Transformer, TransformerConfig
from unnoise.objectives.autoregressive import AutoregressiveObjective
from unnoise.objectives.masked import MaskedDiffusionObjective

CORPUS = "to be or not to be that is the question. " * 40


def toy_dataset() -> TokenDataset:
    tokenizer = CharTokenizer.from_texts([CORPUS])
    return TokenDataset(token_windows(tokenizer.encode(CORPUS), 16, 5), tokenizer, "toy", ["toy"])


def train(objective, dataset, steps=30, seed=0):
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(objective.trainable_parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(seed)
    evaluation = {"x": dataset.x[:64]}
    first = float(objective.loss(evaluation, torch.Generator().manual_seed(1)).mean().detach())
    for step in range(steps):
        rows = torch.randint(0, len(dataset), (32,), generator=generator)
        loss = objective.loss({"x": dataset.x[rows]}, generator).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    last = float(objective.loss(evaluation, torch.Generator().manual_seed(1)).mean().detach())
    return first, last


def small(vocab, **options):
    torch.manual_seed(0)
    return Transformer(TransformerConfig(vocab_size=vocab, input_size=vocab + 1, length=16, width=32, depth=2,
                                         heads=4, **options))


@pytest.mark.parametrize("kind", ["absorbing", "uniform"])
def test_masked_diffusion_objective_learns_and_samples(kind):
    dataset = toy_dataset()
    vocab = dataset.vocab_size
    process = make_process(kind, vocab, "linear")
    model = small(vocab, time_conditioned=kind == "uniform")
    objective = MaskedDiffusionObjective(model, process)
    first, last = train(objective, dataset)
    assert last < 0.9 * first
    model.eval()
    template = prefix_template(dataset.tokenizer.encode("to be"), 16)
    out = sample_tokens(objective.denoiser_for(model), process, [0, 1], 16, 8, template=template)
    assert dataset.tokenizer.decode(out[0]).startswith("to be")


def test_autoregressive_objective_learns():
    dataset = toy_dataset()
    objective = AutoregressiveObjective(small(dataset.vocab_size, causal=True))
    first, last = train(objective, dataset)
    assert last < 0.6 * first


def test_objective_rows_are_drawn_for_the_whole_batch():
    dataset = toy_dataset()
    process = make_process("absorbing", dataset.vocab_size)
    objective = MaskedDiffusionObjective(small(dataset.vocab_size), process)
    rows = objective.draw({"x": dataset.x[:8]}, torch.Generator().manual_seed(0))
    assert rows["t"].shape == (8,) and rows["uniforms"].shape == (8, 2, 16)
    whole = objective.loss_of(rows)
    halves = torch.cat([objective.loss_of({k: v[:4] for k, v in rows.items()}),
                        objective.loss_of({k: v[4:] for k, v in rows.items()})])
    assert torch.allclose(whole, halves, rtol=1e-5, atol=1e-6)


def test_templates_from_prompt_and_infill_text():
    from unnoise.discrete.sample import FREE, infill_template, prefix_template
    tokenizer = CharTokenizer.from_texts([CORPUS])
    template = infill_template("to be[MASK:3]or", tokenizer.encode, 10)
    ids = tokenizer.encode("to be").tolist()
    assert template.tolist() == ids + [FREE] * 3 + tokenizer.encode("or").tolist()
    with pytest.raises(Exception, match="longer than the length 10"):
        infill_template("to be[MASK:30]", tokenizer.encode, 10)
    assert prefix_template([1, 2], 4).tolist() == [1, 2, FREE, FREE]


def test_text_recipes_build_generate_and_score():
    from unnoise.discrete.text import build_text_model, generate_text, heldout_bits
    from unnoise.errors import UnnoiseError
    dataset = toy_dataset()
    tiny = {"length": 16, "width": 32, "depth": 1, "heads": 4}
    for kind in ("mdlm", "d3pm", "ar"):
        model, process = build_text_model({"kind": kind, "transformer": tiny}, dataset.vocab_size)
        model.eval()
        texts = generate_text(model, process, dataset.tokenizer, [0, 1], 16, nfe=4, prompt="to be")
        assert len(texts) == 2 and all(text.startswith("to be") and len(text) == 16 for text in texts)
        score = heldout_bits(model, process, dataset.x[:6], draws=2, batch=4)
        assert score["windows"] == 6 and score["is_bound"] == (kind != "ar") and score["bits_per_token"] > 0
    out = generate_text(*build_text_model({"kind": "mdlm", "transformer": tiny}, dataset.vocab_size),
                        dataset.tokenizer, [3], 16, nfe=4, infill="to [MASK:4] or not")
    assert out[0].startswith("to ") and out[0][7:14] == " or not"
    with pytest.raises(UnnoiseError, match="diffusion run"):
        generate_text(*build_text_model({"kind": "ar", "transformer": tiny}, dataset.vocab_size),
                      dataset.tokenizer, [0], 16, infill="to [MASK:2] be")
