#!/bin/sh
# apt-install.sh PACKAGE...: the one way every stage of the image installs Debian packages.
# Before installing it applies the two build inputs that concern apt:
#   APT_MIRROR   a mirror of Ubuntu's archive over plain HTTP (e.g. http://mirrors.aliyun.com/ubuntu/:
#                the base has no CA certificates yet, and apt checks signatures anyway) that
#                replaces archive.ubuntu.com and security.ubuntu.com in the base's sources;
#   extra-ca.crt beside this script: a company CA, added to the system trust store before
#                anything is fetched over HTTPS (git, pip and curl all use that store).
# and removes apt's lists afterwards, so no layer carries them.
set -eu
here=$(dirname "$0")
if [ -n "${APT_MIRROR:-}" ]; then
  for f in /etc/apt/sources.list.d/ubuntu.sources /etc/apt/sources.list; do
    if [ -f "$f" ]; then sed -i -E "s#https?://(archive|security)\.ubuntu\.com/ubuntu/?#${APT_MIRROR}#g" "$f"; fi
  done
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends ca-certificates "$@"
if [ -f "$here/extra-ca.crt" ]; then
  cp "$here/extra-ca.crt" /usr/local/share/ca-certificates/comfy-stack-extra-ca.crt
  update-ca-certificates
fi
rm -rf /var/lib/apt/lists/*
