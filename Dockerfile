# conch in one image, the alternative to per-rule conda envs: the same pins as requirements.txt (the lock
# every envs/*.yaml is checked against). torch 2.9.1 from PyPI carries its CUDA 12.8 runtime as nvidia-*
# wheels, so the image runs on GPUs given only the host's driver (NVIDIA container toolkit, Kubernetes
# device plugin, `apptainer --nv`). Used by:
#   - Kubernetes: profiles/kubernetes `container-image:` (jobs run inside it);
#   - Slurm/local with Apptainer: `snakemake --sdm apptainer` runs each rule in `compute.container`.
# Build:  docker build -t conch:0.1.0 .   (tests/test_envs.py checks the pins; no engine runs in CI)
FROM python:3.11.7-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/cache/huggingface

# git: LLaMA-Factory and huggingface_hub shell out to it; procps: `ps` for Snakemake's job handling.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git procps \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/conch
# The lock alone first, so editing code does not reinstall 5 GB of wheels.
COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY pyproject.toml ./
COPY conch ./conch
RUN pip install --no-deps --no-build-isolation -e .

# Jobs run in the workflow's working directory (Kubernetes: /workdir, Apptainer: the bind-mounted one).
WORKDIR /workdir
