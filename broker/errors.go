package broker

import "errors"

// ErrDataDirLocked means another running broker holds the data dir.
var ErrDataDirLocked = errors.New("data dir locked")

// ErrFewerPartitions means a topic exists with fewer partitions than asked
// for. It is not repaired automatically: adding partitions to an existing
// topic moves keys to other partitions and breaks per-key ordering, so it is
// the operator's decision.
var ErrFewerPartitions = errors.New("topic has fewer partitions than configured")
