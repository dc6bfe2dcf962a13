#!/usr/bin/env bash
# Installs what building rkube and running its tests need on a fresh Debian
# machine (run as root). Safe to run again: it only installs what is missing.
set -euo pipefail

packages=(
  protobuf-compiler libprotobuf-dev   # etcd-client's generated gRPC code
  libseccomp-dev                       # container runtime
  etcd-server etcd-client              # the etcd backend's tests and benchmark
  docker-registry                      # a real OCI registry for image tests
  apache2-utils                        # htpasswd, for the registry's basic-auth test
  busybox-static                       # the rootfs of test images
  nftables iproute2                    # service proxy and pod network tests
  openssl procps                       # etcd TLS test certificates, kill -STOP
  curl util-linux                      # service proxy tests (busybox wget crashes here); nsenter, mount
  containernetworking-plugins          # real CNI plugins (/usr/lib/cni) for the CNI mode's tests
  make                                 # jemalloc's build (tikv-jemalloc-sys runs configure and make)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

exit 0
