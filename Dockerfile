# dlgrade, CPU image (docs/containers.md): the install of `make setup` without the dev tools.
#   docker build -t dlgrade:cpu .
#   docker run --rm --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
#     --security-opt systempaths=unconfined -v "$PWD/course:/course" dlgrade:cpu check sub.ipynb --assignment shapes_params
# Runs as an ordinary user: the kernel is sandboxed by bubblewrap, which needs the three --security-opt above.
# The project's Python (pyproject: >= 3.10; .venv and CI: 3.11), Debian 12 like the development machine.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

# The pinned torch of pyproject's `tested` extra, from PyTorch's CPU-only index (no CUDA libraries: about 4 GB
# smaller). --build-arg TORCH_INDEX_URL=https://pypi.org/simple gives the default (CUDA) wheels of the same versions.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

# bubblewrap: the kernel's sandbox when the grader is not root (harness/bubblewrap.py)
RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap \
    && rm -rf /var/lib/apt/lists/*

ENV VIRTUAL_ENV=/opt/dlgrade/venv \
    PATH=/opt/dlgrade/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv "$VIRTUAL_ENV"
# torch first, from its own index: the `tested` extra below then finds torch==2.14.1 (+cpu) already satisfied
RUN pip install --index-url "$TORCH_INDEX_URL" torch==2.14.1 torchvision==0.29.1

# The source tree, as `make setup` has it: an editable install, so that the bundled assignments (next to the
# packages, harness/spec.py) are found by name. Owned by root: read-only to the grader.
WORKDIR /opt/dlgrade/src
COPY pyproject.toml README.md ./
COPY harness harness
COPY reference reference
COPY grading grading
COPY assignments assignments
RUN pip install -e '.[course,tested]' \
    && python -c "import torch, papermill, nbgrader, fvcore, harness; print('torch', torch.__version__)" \
    && python -m ipykernel install --sys-prefix --name dlgrade --display-name "Python (dlgrade)"

# An ordinary user: dlgrade then puts each kernel in bubblewrap (run.sandbox.mechanism = "bubblewrap"). HOME is
# writable by any uid, for `docker run --user "$(id -u):$(id -g)"` (files written to bind mounts are then yours).
RUN useradd --create-home --uid 1000 --shell /bin/bash dlgrade \
    && chmod 1777 /home/dlgrade \
    && mkdir /course && chown dlgrade:dlgrade /course
ENV HOME=/home/dlgrade
USER dlgrade
WORKDIR /course
ENTRYPOINT ["dlgrade"]
CMD ["--help"]
