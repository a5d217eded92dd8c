# The harness worker image (the `worker` service of docker-compose.yml).
#
# Base: python:3.11-slim plus PyTorch from PyPI, whose Linux wheels bundle the CUDA libraries,
# so the image needs only the host's NVIDIA driver and the NVIDIA Container Toolkit, and runs
# the same versions as `pip install .` everywhere else (a pytorch/pytorch image would pin an
# older torch than pyproject.toml resolves to). For a host whose driver is too old for the
# default wheel's CUDA, build with a PyTorch wheel index, e.g.
#   docker compose build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 worker
FROM python:3.11-slim-bookworm

ARG TORCH_INDEX_URL=""
ARG GIT_COMMIT=""
LABEL org.opencontainers.image.title="harness worker" \
      org.opencontainers.image.revision="${GIT_COMMIT}"

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLBACKEND=Agg \
    HARNESS_DATA=/data \
    HARNESS_CODE_VERSION=${GIT_COMMIT}

WORKDIR /app

# 1. PyTorch from a given wheel index, when asked (otherwise step 2 takes PyPI's).
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
        pip install torch torchvision --index-url "$TORCH_INDEX_URL"; \
    fi

# 2. The dependencies alone, against an empty package: this layer is rebuilt only when
#    pyproject.toml changes, not on every code change.
COPY pyproject.toml README.md ./
RUN mkdir harness && touch harness/__init__.py \
    && pip install . \
    && pip uninstall -y harness \
    && rm -rf harness build ./*.egg-info

# 3. The package itself (console script `harness`), the bundled studies, the entrypoint.
COPY harness ./harness
RUN pip install --no-deps . && rm -rf build ./*.egg-info && harness --help >/dev/null
COPY studies ./studies
COPY docker/entrypoint.py /usr/local/lib/harness-entrypoint.py

RUN mkdir -p /data /run/harness-gpu-slots

# The entrypoint pins each replica to a free GPU, then execs the command.
ENTRYPOINT ["python", "/usr/local/lib/harness-entrypoint.py"]
CMD ["harness", "--help"]
