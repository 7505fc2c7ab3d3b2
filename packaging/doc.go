// Package packaging holds no code: its tests check what scripts/release.sh
// ships. The release binaries run under qemu-user (arm64, ARMv7), the
// .deb is inspected, installed and removed, and the packaged config loads.
// The packaging files themselves are in deb/.
package packaging
