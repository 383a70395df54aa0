#!/usr/bin/env bash
# Build the seamcut server image (Dockerfile, docs/DEPLOY.md). Usage:
#   scripts/build_image.sh [--flavour cpu|gpu] [--tag NAME] [--base IMAGE]
#                          [--debootstrap] [--wheels DIR] [--pip-cert FILE]
#                          [--isolation chroot|oci] [-- ENGINE-ARGS]
#   --flavour      cpu (default) or gpu (the CUDA base below unless --base)
#   --tag          image name (default seamcut:FLAVOUR)
#   --base         BASE_IMAGE (default: the Dockerfile's python:3.11-slim-bookworm for
#                  cpu, nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 for gpu)
#   --debootstrap  cpu, for hosts that reach Debian's mirror but no image registry: make
#                  the base with debootstrap (bookworm + python3) in a temporary folder,
#                  import it as localhost/seamcut-base:bookworm (once) and build on it
#   --wheels DIR   CPU torch from this folder instead of download.pytorch.org (default:
#                  $PIP_FIND_LINKS when it is one folder holding a torch wheel)
#   --pip-cert F   CA bundle for pip inside the build, behind a TLS-intercepting proxy
#                  (default: $PIP_CERT when it is a file)
#   --isolation    podman/buildah RUN isolation; chroot needs no OCI runtime, for hosts
#                  where crun cannot make the container's cgroups (a VM or container
#                  with hybrid cgroups: "cgroups in hybrid mode not supported")
# --wheels and --pip-cert mount the host path read-only into the build's RUN steps
# (podman/buildah -v); docker build has no such mount and gets neither. Prefers podman,
# then buildah, then docker; BUILD_IMAGE_ENGINE=... picks one (not SEAMCUT_...: the
# server refuses SEAMCUT_ variables that name no setting). Storage, rootfs and the
# base stay under podman's storage and /tmp, never in the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."

flavour=cpu tag="" base="" debootstrap=0 wheels="" pip_cert="" isolation="" extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --flavour) flavour="$2"; shift 2 ;;
    --tag) tag="$2"; shift 2 ;;
    --base) base="$2"; shift 2 ;;
    --debootstrap) debootstrap=1; shift ;;
    --wheels) wheels="$2"; shift 2 ;;
    --pip-cert) pip_cert="$2"; shift 2 ;;
    --isolation) isolation="$2"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "build_image: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$flavour" in cpu|gpu) ;; *) echo "build_image: --flavour cpu|gpu" >&2; exit 2 ;; esac
tag="${tag:-seamcut:$flavour}"

engine="${BUILD_IMAGE_ENGINE:-}"
if [ -z "$engine" ]; then
  for e in podman buildah docker; do command -v "$e" >/dev/null && { engine=$e; break; }; done
fi
[ -n "$engine" ] || { echo "build_image: no podman, buildah or docker on PATH" >&2; exit 1; }

if [ "$debootstrap" = 1 ]; then
  [ "$flavour" = cpu ] || { echo "build_image: --debootstrap makes a CPU base only" >&2; exit 2; }
  [ "$engine" != docker ] || { echo "build_image: --debootstrap imports with podman" >&2; exit 2; }
  base=localhost/seamcut-base:bookworm
  if ! podman image exists "$base"; then
    command -v debootstrap >/dev/null || { echo "build_image: apt-get install debootstrap" >&2; exit 1; }
    # The mirror this host's apt uses (a snapshot or proxy may be all it reaches).
    mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources \
             2>/dev/null | head -n1)
    mirror="${mirror:-http://deb.debian.org/debian}"
    rootfs=$(mktemp -d /tmp/seamcut-rootfs.XXXXXX)
    trap 'rm -rf "$rootfs"' EXIT
    echo "build_image: debootstrap bookworm from $mirror into $rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
      bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
      || { tail -20 "$rootfs.log" >&2; exit 1; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs.log"
    tar -C "$rootfs" -c . | podman import - "$base" >/dev/null
    echo "build_image: imported $base"
  fi
fi
if [ -z "$base" ] && [ "$flavour" = gpu ]; then
  base=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
fi

# The host's pip settings, when they name one local folder / file.
if [ -z "$wheels" ] && [ -n "${PIP_FIND_LINKS:-}" ] && [ -d "${PIP_FIND_LINKS}" ] \
   && compgen -G "${PIP_FIND_LINKS}/torch-*.whl" >/dev/null; then
  wheels="$PIP_FIND_LINKS"
fi
if [ -z "$pip_cert" ] && [ -n "${PIP_CERT:-}" ] && [ -f "${PIP_CERT}" ]; then
  pip_cert="$PIP_CERT"
fi

args=(--build-arg "FLAVOUR=$flavour" -t "$tag" -f Dockerfile)
[ -n "$base" ] && args+=(--build-arg "BASE_IMAGE=$base")
if [ "$engine" = docker ]; then
  [ -z "$wheels$pip_cert" ] || echo "build_image: docker build cannot mount --wheels/--pip-cert; ignored" >&2
else
  # docker format: OCI image configs have no HEALTHCHECK, podman drops it from them.
  args+=(--format docker)
  [ -n "$wheels" ] && args+=(-v "$(realpath "$wheels"):/wheels:ro" --build-arg PIP_FIND_LINKS=/wheels)
  [ -n "$pip_cert" ] && args+=(-v "$(realpath "$pip_cert"):/run/pip-ca.pem:ro" \
                               --build-arg PIP_CERT=/run/pip-ca.pem)
  [ -n "$isolation" ] && args+=(--isolation "$isolation")
fi
case "$engine" in buildah) cmd=(buildah bud) ;; *) cmd=("$engine" build) ;; esac
echo "build_image: ${cmd[*]} ${args[*]} ${extra[*]} ."
start=$(date +%s)
"${cmd[@]}" "${args[@]}" "${extra[@]}" .
echo "build_image: built $tag in $(( $(date +%s) - start )) s"
