"""What older supported torch versions (>= 2.11, docs/install.md) need from the sandbox, proven on this one."""
from __future__ import annotations

import pytest

from harness.execute import Limits, Sandbox, execute
from harness.prepare import inject_parameters
from tests.conftest import notebook


@pytest.mark.slow  # a real kernel
def test_the_kernel_has_a_user_name_without_a_passwd_entry():
    # torch 2.11 calls getpass.getuser() when torch.export imports torch._dynamo; the kernel's own uid (a root
    # grader's sandbox) has no passwd entry, so without a name in the environment every export failed there
    nb = inject_parameters(notebook(["import getpass, os\nprint(getpass.getuser(), os.getuid())"], submit=None), {},
                           "dlgrade")
    box = Sandbox.create()
    try:
        report = execute(nb, box, Limits(threads=1), "dlgrade")
    finally:
        box.remove()
    cell = report.notebook.cells[-1]
    assert report.outcome == "completed" and report.cells[-1].error is None, report.cells[-1].error
    assert cell.outputs[0]["text"].split()[0] == "dlgrade"
