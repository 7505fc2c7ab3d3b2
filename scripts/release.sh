#!/usr/bin/env bash
# Release builds of infergate: static binaries for every target, .deb packages,
# SHA-256 sums, an SBOM and third-party notices in dist/ (see docs/install.md).
#
#   scripts/release.sh                 everything, into dist/
#   scripts/release.sh --check         cross-build every target into a temp dir and
#                                      delete it again (CI: fails if a target breaks)
#   scripts/release.sh --targets "linux/amd64" --out DIR   a subset
#
# Environment: VERSION (default: the tag `git describe` finds, else a Go
# pseudo-version of HEAD), SOURCE_DATE_EPOCH (build date; default: now),
# JOBS (parallel builds; default 2).
set -euo pipefail
shopt -s nullglob
cd "$(dirname "$0")/.."

ALL_TARGETS="linux/amd64 linux/arm64 linux/armv7 linux/armv6 windows/amd64 darwin/arm64 darwin/amd64"
targets=$ALL_TARGETS
out=dist
check=false
while (($#)); do
	case $1 in
	--check) check=true ;;
	--out) out=$2; shift ;;
	--targets) targets=$2; shift ;;
	-h | --help) sed -n '2,13p' "$0"; exit 0 ;;
	*) echo "release.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done

commit=$(git rev-parse HEAD)
if [[ -n $(git status --porcelain --untracked-files=no) ]]; then commit+=-dirty; fi
if [[ -z ${VERSION:-} ]]; then
	if VERSION=$(git describe --tags --match 'v[0-9]*' --dirty 2>/dev/null); then :; else
		# The form the go command stamps into a plain `go build` of an untagged commit.
		VERSION=v0.0.0-$(TZ=UTC git log -1 --date=format-local:%Y%m%d%H%M%S --format=%cd)-$(git rev-parse --short=12 HEAD)
		[[ $commit == *-dirty ]] && VERSION+=+dirty
	fi
fi
date=$(date -u -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}" +%Y-%m-%dT%H:%M:%SZ)
pkg=github.com/infergate/infergate/buildinfo
ldflags="-s -w -X $pkg.version=$VERSION -X $pkg.commit=$commit -X $pkg.date=$date"

if $check; then
	out=$(mktemp -d)
	trap 'rm -rf "$out"' EXIT
fi
mkdir -p "$out"

# binary_name TARGET: infergate_<version>_<os>_<arch>[.exe]
binary_name() {
	local os=${1%/*} arch=${1#*/} ext=""
	[[ $os == windows ]] && ext=.exe
	echo "infergate_${VERSION}_${os}_${arch}${ext}"
}

build() {
	local target=$1 os=${1%/*} arch=${1#*/} goarm=""
	case $arch in armv6) arch=arm goarm=6 ;; armv7) arch=arm goarm=7 ;; esac
	if ! CGO_ENABLED=0 GOOS=$os GOARCH=$arch GOARM=$goarm go build -trimpath -ldflags "$ldflags" \
		-o "$out/$(binary_name "$target")" ./cmd/infergate 2>"$out/.$os-$arch$goarm.log"; then
		echo "FAILED $target:" >&2
		cat "$out/.$os-$arch$goarm.log" >&2
		return 1
	fi
	rm -f "$out/.$os-$arch$goarm.log"
	echo "built $target"
}
export -f build binary_name
export out ldflags VERSION

start=$(date +%s)
echo "--- infergate $VERSION (commit $commit, built $date): $targets"
# xargs exits non-zero if any build failed; every failure is printed.
if ! printf '%s\n' $targets | xargs -P "${JOBS:-2}" -I{} bash -c 'build {}'; then
	echo "release.sh: a target failed to build" >&2
	exit 1
fi
echo "--- built in $(($(date +%s) - start))s"
if $check; then exit 0; fi

# Debian packages: armhf carries the ARMv6 build, so one package serves Debian's
# armhf (ARMv7) and Raspberry Pi OS 32-bit, which also runs on ARMv6 boards.
for target in $targets; do
	case $target in
	linux/amd64) debarch=amd64 ;;
	linux/arm64) debarch=arm64 ;;
	linux/armv6) debarch=armhf ;;
	*) continue ;;
	esac
	packaging/deb/build.sh "$out/$(binary_name "$target")" "$VERSION" "$debarch" "$out"
done

# Licenses and notices of the third-party code linked into the binaries
# (generated in notices/; its tests check it covers every target's modules).
cp notices/THIRD_PARTY_NOTICES.txt "$out/infergate_${VERSION}_THIRD_PARTY_NOTICES.txt"

# SBOM: the module graph and build settings the go command recorded in each binary.
bins=()
for target in $targets; do bins+=("$(binary_name "$target")"); done
(cd "$out" && go version -m "${bins[@]}" >"infergate_${VERSION}_sbom.txt")
(cd "$out" && sha256sum "${bins[@]}" ./*.deb "infergate_${VERSION}_sbom.txt" "infergate_${VERSION}_THIRD_PARTY_NOTICES.txt" | sed 's| \*\?\./| |' >SHA256SUMS)
echo "--- $out:"
ls -l "$out"
