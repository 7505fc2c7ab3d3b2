// Package notices carries the license texts and notices of the third-party
// code linked into infergate, so that every copy of the binary has them:
// `infergate version --notices` prints them, scripts/release.sh puts them
// beside the binaries and the .deb installs them under
// /usr/share/doc/infergate.
//
// THIRD_PARTY_NOTICES.txt is generated (notices/gen); TestUpToDate fails
// when a dependency changes and the file was not regenerated.
package notices

import _ "embed"

//go:generate go run ./gen -o THIRD_PARTY_NOTICES.txt

//go:embed THIRD_PARTY_NOTICES.txt
var text string

// Text returns the notices.
func Text() string { return text }
