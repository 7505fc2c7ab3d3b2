#!/usr/bin/env bash
# packaging/deb/build.sh BINARY VERSION DEBARCH OUTDIR: one .deb from a release
# binary, with dpkg-deb alone (no debhelper, no download). scripts/release.sh
# calls it for amd64, arm64 and armhf.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=$1 version=$2 arch=$3 out=$4

# Debian versions start with a digit and sort "~" before anything, so an
# untagged v0.0.0-2026...-sha pseudo-version sorts below the release 0.0.0.
debversion=${version#v}
debversion=${debversion//-/\~}

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
install -d -m 0755 "$root/DEBIAN" "$root/usr/bin" "$root/etc/infergate" "$root/lib/systemd/system" \
	"$root/usr/lib/sysusers.d" "$root/usr/share/doc/infergate" "$root/usr/share/lintian/overrides"
install -m 0755 "$bin" "$root/usr/bin/infergate"
install -m 0644 "$here/infergate.yaml" "$root/etc/infergate/infergate.yaml"
install -m 0644 "$here/infergate.service" "$root/lib/systemd/system/infergate.service"
install -m 0644 "$here/sysusers.conf" "$root/usr/lib/sysusers.d/infergate.conf"
install -m 0644 "$here/copyright" "$root/usr/share/doc/infergate/copyright"
install -m 0644 "$here/lintian-overrides" "$root/usr/share/lintian/overrides/infergate"
# The licenses of the third-party code in the binary (notices/: generated,
# tested to cover every linked module).
gzip -9n <"$here/../../notices/THIRD_PARTY_NOTICES.txt" >"$root/usr/share/doc/infergate/THIRD_PARTY_NOTICES.gz"
for doc in install.md configuration.md operations.md; do
	gzip -9n <"$here/../../docs/$doc" >"$root/usr/share/doc/infergate/$doc.gz"
done
{
	echo "infergate ($debversion) unstable; urgency=medium"
	echo
	echo "  * Release $version."
	echo
	echo " -- infergate maintainers <infergate@users.noreply.github.com>  $(date -u -R -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}")"
} | gzip -9n >"$root/usr/share/doc/infergate/changelog.gz"
chmod 0644 "$root/usr/share/doc/infergate"/*.gz
for s in postinst prerm postrm; do install -m 0755 "$here/$s" "$root/DEBIAN/$s"; done
echo /etc/infergate/infergate.yaml >"$root/DEBIAN/conffiles"
cat >"$root/DEBIAN/control" <<CONTROL
Package: infergate
Version: $debversion
Architecture: $arch
Maintainer: infergate maintainers <infergate@users.noreply.github.com>
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: passwd
Section: net
Priority: optional
Homepage: https://github.com/infergate/infergate
Description: streaming inference appliance: Kafka in, model, Kafka out
 A single static binary: an embedded Kafka broker (or an external cluster),
 a TensorFlow-Serving-compatible model server running ONNX models in pure
 Go, a micro-batching pipeline from a requests topic to a results topic with
 a dead-letter queue, and a dashboard with an admin API. Runs as the
 infergate systemd service with its state in /var/lib/infergate.
CONTROL
deb="$out/infergate_${debversion}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "built $deb"
