import time
from dask_jobqueue import SLURMCluster
from distributed import Client
t = time.monotonic()
with SLURMCluster(cores=1, processes=1, memory="2GB", walltime="00:10:00", queue="debug",
                  python="/work/main/.venv/bin/python", log_directory="/tmp/slurm/log/jobs",
                  scheduler_options={"dashboard_address": None}) as cluster:
    cluster.scale(jobs=2)
    with Client(cluster) as client:
        client.wait_for_workers(2, timeout=120)
        print("2 workers in", round(time.monotonic() - t, 1), "s")
        import subprocess
        print(subprocess.run(["squeue"], capture_output=True, text=True).stdout)
        print(client.gather(client.map(lambda x: (x, __import__("os").environ.get("SLURM_JOB_ID")), range(4))))
