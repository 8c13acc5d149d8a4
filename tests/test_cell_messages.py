"""What a student reads about failing cells: the cell named by number and first line, the first error kept,
follow-on NameErrors folded into one line, a hint for .cuda() on a runner without a GPU, no sentence cut."""
from __future__ import annotations

from harness.cell_messages import NO_GPU_HINT, shorten
from harness.grade import grade_one

CUDA_MODEL = """\
import torch
from torch import nn
model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 10)).cuda()
"""


def test_cuda_on_a_cpu_runner_names_the_cell_says_to_use_device_and_folds_the_follow_on_name_errors(tiny):
    spec, write = tiny()
    # cell 2 fails; cells 3, 4 and the submit cell (6) use what it should have defined; cell 5 fails on its own
    result = grade_one(write([CUDA_MODEL, "model.eval()", "n = sum(p.numel() for p in model.parameters())",
                              "raise ValueError('my own bug')"]), spec)
    assert (result.status, result.error["kind"], result.error["cell"]) == ("failed", "cell_error", 1)
    message = result.error["message"]
    assert message.startswith('cell 2 ("import torch") raised RuntimeError: Found no NVIDIA driver on your system.')
    assert NO_GPU_HINT in message
    assert message.endswith('device="cuda". So no model was submitted: fix that cell, restart the kernel and run all '
                            "cells.")
    cell_notes = [n for n in result.notes if "raised" in n]
    assert len(cell_notes) == 3, result.notes
    assert cell_notes[0].startswith('cell 2 ("import torch") raised RuntimeError: Found no NVIDIA driver')
    assert cell_notes[1] == """cell 5 ("raise ValueError('my own bug')") raised ValueError: my own bug"""
    assert cell_notes[2] == ('3 later cells (3, 4, 6) raised NameError, most likely because cell 2 ("import torch") '
                             "failed before defining those names: fix that cell first")


def test_a_long_error_is_cut_at_a_sentence_never_inside_a_word():
    text = "The first sentence says what failed. " + "Then a long explanation follows " * 20
    assert shorten(text, 60) == "The first sentence says what failed. …"  # ends past half the limit
    words = "word " * 100
    cut = shorten(words, 50)
    assert cut == "word " * 9 + "word …"
    assert shorten("short: kept whole", 100) == "short: kept whole"


BRANCHY_MODEL = """\
import torch
from torch import nn
class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 4 * 4, 10)
    def forward(self, x):
        return self.fc(x.flatten(1)) if x.sum() > 0 else -self.fc(x.flatten(1))
model = Branchy()
"""


def test_an_export_failure_is_the_error_whole_and_not_repeated_as_a_cut_note(tiny):
    spec, write = tiny()
    result = grade_one(write([BRANCHY_MODEL]), spec)
    assert (result.status, result.error["kind"]) == ("failed", "export_failed")
    assert result.error["message"].startswith("torch.export could not capture your model (")
    assert result.error["message"].endswith("use torch.where(...) for element-wise choices, or decide the branch "
                                            "from shapes/attributes.")
    assert not [note for note in result.notes if "ExportError" in note]
