"""Imported by the fork server of the local workers (grading.batch.local_executor), before it forks any worker.

The fork server dies with the coordinator that started it, so its workers (which die with the fork server) and
their helpers go too; and it imports the grading path once, so no worker pays for importing torch.
"""
from harness.processes import die_with_parent

die_with_parent()

import grading.batch  # noqa: E402,F401
import harness.grade  # noqa: E402,F401
