//go:build !unix

package modelbench

import "time"

func processCPU() time.Duration { return 0 }
