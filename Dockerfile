# eqmarl image: Python 3.11 (Debian 12), torch (CPU or CUDA), eqmarl with its extras,
# the SLURM client (submitit's scontrol inside jobs) and, when the build is told the
# licence is accepted, StarCraft II 4.10 + SMACv2 maps at /opt/StarCraftII.
#
#   docker build -t eqmarl:cpu .                                     # CPU, no StarCraft II
#   docker build -t eqmarl:cuda --build-arg TORCH_INDEX_URL= .       # CUDA torch from PyPI
#   docker build -t eqmarl:cpu --build-arg SC2_ACCEPT_LICENSE=yes \
#       --build-arg SMACV2_SPEC="git+https://github.com/oxwhirl/smacv2.git@<commit>" .
#
# SC2_ACCEPT_LICENSE=yes means accepting Blizzard's AI and Machine Learning License
# (http://blzdistsc2-a.akamaihd.net/AI_AND_MACHINE_LEARNING_LICENSE.html).
# Offline builds point SC2_URL/SC2_MAPS_URL and the pip indexes at local servers, or leave
# StarCraft II out (the default). Runs as any user; writes only to bound run directories.

ARG BASE=debian:bookworm-slim

# ---------------------------------------------------------------- toolchain
FROM ${BASE} AS toolchain
ARG DEBIAN_FRONTEND=noninteractive
# apt versions are pinned by the Debian release (bookworm), not per package (DL3008)
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev g++ make cmake git \
       ca-certificates unzip \
    && rm -rf /var/lib/apt/lists/*

# ---------------------------------------------------------------- the dependency list
# only the list of eqmarl's dependencies (and the chosen extras) reaches the builder, so
# editing other parts of pyproject.toml reuses the dependency layer
FROM toolchain AS requirements
# extras of eqmarl to install (mpe, cluster, smax, hanabi, deepspeed)
ARG EXTRAS=mpe,cluster,smax,hanabi,deepspeed
COPY pyproject.toml /tmp/pyproject.toml
RUN python3 -c "import sys, tomllib; p = tomllib.load(open('/tmp/pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + [d for e in sys.argv[1].split(',') if e for d in p['optional-dependencies'][e]]))" \
      "$EXTRAS" > /tmp/requirements.txt

# ---------------------------------------------------------------- builder: the venv
FROM toolchain AS builder
# pip sources: PyPI by default; an offline build passes local indexes/wheel folders
ARG PIP_INDEX_URL=https://pypi.org/simple
ARG PIP_EXTRA_INDEX_URL=
ARG PIP_FIND_LINKS=
ARG PIP_TRUSTED_HOST=
# behind a TLS-intercepting proxy: a URL of the CA bundle pip should trust (fetched over http)
ARG CA_BUNDLE_URL=
# torch: the CPU wheel index (empty: PyPI's default CUDA build)
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# extra pins, space-separated (e.g. "cloudpickle==2.1.0 submitit==1.5.4"): submitit's pickles
# cross between the submitting Python and the image, so both need the same cloudpickle
ARG PIP_PINS=
# StarCraft II Python packages: pysc2 from PyPI; smacv2 is not on PyPI (git URL pinned to
# a commit, or a local path); empty SMACV2_SPEC: neither is installed
ARG PYSC2_SPEC=pysc2==4.0.0
ARG SMACV2_SPEC=
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 \
    CMAKE_POLICY_VERSION_MINIMUM=3.5 DS_BUILD_OPS=0 PATH=/opt/venv/bin:$PATH
RUN python3 -m venv /opt/venv \
    && if [ -n "$CA_BUNDLE_URL" ]; then \
         python3 -c "import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], '/opt/pip-ca.crt')" \
           "$CA_BUNDLE_URL" && pip config --site set global.cert /opt/pip-ca.crt; fi
COPY constraints.txt /tmp/constraints.txt
RUN for pin in $PIP_PINS; do echo "$pin" >> /tmp/constraints.txt; done \
    && pip install -c /tmp/constraints.txt ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} torch
# dependencies first, so a change of eqmarl's source reuses this layer
COPY --from=requirements /tmp/requirements.txt /tmp/requirements.txt
RUN pip install -c /tmp/constraints.txt -r /tmp/requirements.txt \
    && if [ -n "$SMACV2_SPEC" ]; then \
         pip install -c /tmp/constraints.txt "$PYSC2_SPEC" "$SMACV2_SPEC" "protobuf<3.21"; fi
COPY pyproject.toml README.md /tmp/eqmarl/
COPY src /tmp/eqmarl/src
RUN pip install --no-deps /tmp/eqmarl \
    && rm -f /opt/venv/pip.conf /opt/pip-ca.crt \
    && find /opt/venv -name 'tests' -path '*site-packages/*/tests' -prune -exec rm -rf {} +
# (the bytecode pip compiled stays: the image is read-only at run time, and without it every
# start recompiles torch and friends: 16.6 s instead of 6.6 s from docker run to the first
# iteration, for +176 MB unpacked; docs/results/image_cpu*.json)

# ---------------------------------------------------------------- StarCraft II (optional)
FROM toolchain AS sc2
ARG SC2_ACCEPT_LICENSE=no
ARG SC2_URL=https://blzdistsc2-a.akamaihd.net/Linux/SC2.4.10.zip
ARG SC2_SHA256=1052f249f30a242bf5e17cc3315324919f9689307ca6dbcdb30bb41ea3004884
ARG SC2_MAPS_URL=https://github.com/oxwhirl/smacv2/releases/download/maps/SMAC_Maps.zip
ARG SC2_MAPS_SHA256=e507cc53b49f0ac334732d62628a42e0be2c53e9df29eeeaf608bb861a2a76cd
COPY src/eqmarl/install_sc2.py /tmp/install_sc2.py
RUN if [ "$SC2_ACCEPT_LICENSE" = yes ]; then \
      python3 /tmp/install_sc2.py --accept-license --dest /opt/StarCraftII --cache /tmp/sc2-cache \
        --url "$SC2_URL" --sha256 "$SC2_SHA256" --maps-url "$SC2_MAPS_URL" --maps-sha256 "$SC2_MAPS_SHA256" \
        --no-keep-archive \
      && rm -rf /tmp/sc2-cache /opt/StarCraftII/Replays/* ; \
    else \
      mkdir -p /opt/StarCraftII \
      && echo "built without StarCraft II (SC2_ACCEPT_LICENSE=$SC2_ACCEPT_LICENSE)" > /opt/StarCraftII/NOT_INSTALLED; \
    fi \
    && chmod -R a+rX /opt/StarCraftII

# ---------------------------------------------------------------- runtime
FROM ${BASE}
ARG DEBIAN_FRONTEND=noninteractive
# python3: the venv's interpreter; slurm-client: scontrol for submitit (requeue, node names);
# libgl1/libegl1 are not needed (SMACv2 starts StarCraft II with want_rgb=False)
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 ca-certificates slurm-client libgomp1 \
    && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/* \
    && mkdir -p /etc/slurm /run/munge /opt/eqmarl \
    && chmod 1777 /run/munge
COPY --from=builder /opt/venv /opt/venv
COPY --from=sc2 /opt/StarCraftII /opt/StarCraftII
COPY launch.py /opt/eqmarl/launch.py
COPY configs /opt/eqmarl/configs
COPY containers/entrypoint.sh /opt/eqmarl/entrypoint.sh
# protobuf: pysc2/smacv2 need the pure-Python implementation with protobuf >= 3.21;
# JAX: no preallocation of GPU memory (torch shares the GPU); HOME/caches: writable for any uid
ENV PATH=/opt/venv/bin:$PATH \
    SC2PATH=/opt/StarCraftII \
    PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python \
    XLA_PYTHON_CLIENT_PREALLOCATE=false \
    MPLCONFIGDIR=/tmp/matplotlib \
    WANDB_CONFIG_DIR=/tmp/wandb-config \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /opt/eqmarl
USER 65534:65534
ENTRYPOINT ["/opt/eqmarl/entrypoint.sh"]
CMD ["eqmarl", "doctor"]
