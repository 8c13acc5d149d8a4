import os, sys, tempfile, time
from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpec

runtime = tempfile.mkdtemp(prefix="rt-")
os.chmod(runtime, 0o700)
argv = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
        "--bind", runtime, runtime, "--unshare-all", "--die-with-parent", "--new-session", "--unsetenv", "JPY_PARENT_PID",
        sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
km = KernelManager(transport="ipc", ip=os.path.join(runtime, "kernel-ipc"), connection_file=os.path.join(runtime, "kernel.json"))
km._kernel_spec = KernelSpec(argv=argv, display_name="bw", language="python")
t = time.monotonic()
km.start_kernel()
kc = km.client(); kc.start_channels(); kc.wait_for_ready(timeout=60)
print("ready in", round(time.monotonic() - t, 2), "s")
code = ("import os, socket\nprint(os.getpid(), os.getuid())\n"
        "try:\n    socket.create_connection(('1.1.1.1', 80), timeout=2)\nexcept OSError as e:\n    print('net:', e)\n"
        "print(sorted(os.listdir('/proc'))[:5])\n"
        "try:\n    open('/etc/pwned','w')\nexcept OSError as e:\n    print('write:', e)\n")
msg_id = kc.execute(code)
while True:
    m = kc.get_iopub_msg(timeout=20)
    if m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "stream":
        print(m["content"]["text"], end="")
    if m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
        break
kc.stop_channels(); km.shutdown_kernel(now=True)
