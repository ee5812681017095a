# streamdag's image: a pipeline's workers (`streamdag run`) and gateway (`streamdag serve`).
#
#   docker build -t registry.example.com/streamdag:0.1.0 .
#   docker build --build-arg EXTRAS=onnx,otel -t registry.example.com/streamdag:0.1.0-onnx .
#
# The first stage builds the wheel from this checkout, the second installs it (with the
# extras named in EXTRAS) into a slim Python and runs it as an unprivileged user. No Java:
# the image talks to a Kafka cluster; the local broker of `streamdag broker` is for
# development machines. A pipeline's own code (handlers, runtime plug-ins) goes into an
# image built FROM this one, or beside its spec in a mounted volume (docs/deployment.md).

FROM python:3.11-slim-bookworm AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

FROM python:3.11-slim-bookworm
ARG EXTRAS=onnx,sklearn,otel
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    STREAMDAG_SERVE_HOST=0.0.0.0 \
    STREAMDAG_LOG_FORMAT=json
RUN useradd --create-home --uid 10001 --user-group streamdag
COPY --from=wheel /dist /dist
# The wheel is streamdag's own, and its metadata pins every dependency (pyproject.toml).
# hadolint ignore=DL3013
RUN wheel="$(echo /dist/streamdag-*.whl)" \
    && python -m pip install --no-cache-dir "${wheel}[${EXTRAS}]" \
    && rm -rf /dist
USER 10001:10001
WORKDIR /home/streamdag
EXPOSE 8080 8081
ENTRYPOINT ["streamdag"]
CMD ["--help"]
