"""The kernel's bubblewrap command line (harness/bubblewrap.py): what is bound, masked and unshared."""
from __future__ import annotations

from harness.bubblewrap import kernel_command


def test_the_run_is_bound_the_host_read_only_and_masks_cover_files_and_directories(tmp_path):
    hidden_dir = tmp_path / "assignment"
    hidden_dir.mkdir()
    hidden_file = tmp_path / "digits.csv.gz"
    hidden_file.write_text("labels")
    run = "/tmp/dlgrade-run-x"
    command = kernel_command("/usr/bin/bwrap", ["python", "-m", "ipykernel_launcher", "-f", "k.json"], run,
                             [str(hidden_dir), str(hidden_file), str(tmp_path / "absent")])
    assert command == [
        "/usr/bin/bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
        "--bind", f"{run}/work", f"{run}/work", "--bind", f"{run}/out", f"{run}/out",
        "--bind", f"{run}/home", f"{run}/home", "--bind", f"{run}/tmp", f"{run}/tmp",
        "--bind", f"{run}/runtime", f"{run}/runtime", "--ro-bind", f"{run}/data", f"{run}/data",
        "--tmpfs", str(hidden_dir), "--remount-ro", str(hidden_dir),
        "--ro-bind", "/dev/null", str(hidden_file),
        "--unshare-all", "--die-with-parent", "--new-session", "--unsetenv", "JPY_PARENT_PID",
        "--chdir", f"{run}/work", "--", "python", "-m", "ipykernel_launcher", "-f", "k.json"]
