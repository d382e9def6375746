#!/usr/bin/env bash
# Lays out the runtime image's whole filesystem under DEST: the stripped mesh binary, every
# shared library it loads (the ldd closure, each at the path the loader looks for it), the
# dynamic loader, the CA bundle (for wss:// feeds and https:// JWKS), the example
# configuration, and /etc/passwd and /etc/group naming the uid/gid 10001 user. Nothing else:
# no shell, no package manager.
#
#   docker/collect-runtime.sh BINARY DEST
#
# The Dockerfile runs it in the build stage and copies DEST into an empty (scratch) image, so
# `du -sb DEST` run here on a Debian 12 machine measures what the image holds.
set -euo pipefail

binary=${1:?usage: collect-runtime.sh BINARY DEST}
dest=${2:?usage: collect-runtime.sh BINARY DEST}
source_root=$(cd "$(dirname "$0")/.." && pwd)

if [ -e "$dest" ] && [ -n "$(ls -A "$dest")" ]; then
  echo "collect-runtime.sh: $dest is not empty" >&2
  exit 1
fi
mkdir -p "$dest/usr/local/bin" "$dest/etc/mesh" "$dest/etc/ssl/certs" "$dest/tmp"
chmod 1777 "$dest/tmp"

# The binary without debug information or symbol tables the loader does not need.
strip --strip-unneeded -o "$dest/usr/local/bin/mesh" "$binary"

# Every library the loader resolves, copied (not linked) to the path ldd printed, and the
# loader itself (printed without "=>").
ldd "$binary" | awk '
  $2 == "=>" && $3 ~ /^\// { print $3; next }
  $1 ~ /^\// { print $1 }
' | sort -u | while read -r library; do
  mkdir -p "$dest$(dirname "$library")"
  cp -L "$library" "$dest$library"
done
# Debian 12 puts libraries under /lib, a link to /usr/lib: keep the same layout.
if [ -L /lib ] && [ -d "$dest/lib" ] && [ ! -e "$dest/usr/lib" ]; then
  mv "$dest/lib" "$dest/usr/lib"
  ln -s usr/lib "$dest/lib"
fi
if [ -L /lib64 ] && [ -d "$dest/lib64" ] && [ ! -e "$dest/usr/lib64" ]; then
  mv "$dest/lib64" "$dest/usr/lib64"
  ln -s usr/lib64 "$dest/lib64"
fi

cp -L /etc/ssl/certs/ca-certificates.crt "$dest/etc/ssl/certs/ca-certificates.crt"
# OpenSSL's default verify paths (set_default_verify_paths, used for wss:// and https://) are
# $OPENSSLDIR/cert.pem and $OPENSSLDIR/certs; on Debian they are links to /etc/ssl/certs.
openssldir=$(openssl version -d 2>/dev/null | sed -n 's/^OPENSSLDIR: "\(.*\)"$/\1/p')
openssldir=${openssldir:-/usr/lib/ssl}
mkdir -p "$dest$openssldir"
ln -s /etc/ssl/certs/ca-certificates.crt "$dest$openssldir/cert.pem"
ln -s /etc/ssl/certs "$dest$openssldir/certs"
cp "$source_root/config/mesh.example.toml" "$dest/etc/mesh/mesh.example.toml"
printf 'root:x:0:0:root:/root:/sbin/nologin\nmesh:x:10001:10001:mesh:/tmp:/sbin/nologin\n' \
  >"$dest/etc/passwd"
printf 'root:x:0:\nmesh:x:10001:\n' >"$dest/etc/group"
# getaddrinfo: files first (compose and Kubernetes write /etc/hosts), then DNS.
printf 'hosts: files dns\n' >"$dest/etc/nsswitch.conf"

# The copy must run: every library found, the loader able to start the binary.
if ldd "$binary" | grep -q "not found"; then
  echo "collect-runtime.sh: unresolved libraries:" >&2
  ldd "$binary" | grep "not found" >&2
  exit 1
fi
