# The swaptron client for `docker compose run --rm client` (profile `client`): streams a video
# through the Triton server of the compose project and writes the swapped video and the report.
# The `web` service (profile `web`) runs `swaptron web` from the same image.
# Built from the repository root (compose sets the context); only the package sources are copied.
FROM python:3.11-slim
WORKDIR /src
COPY pyproject.toml README.md ./
COPY swaptron swaptron
COPY server server
COPY export export
COPY client client
COPY benchmarks benchmarks
COPY networks networks
COPY training training
COPY weights weights
COPY web web
# torch first from the CPU index (the default wheel pulls GBs of CUDA libraries it does not need).
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
    && pip install --no-cache-dir .
CMD ["swaptron", "--help"]
