//go:build !windows

package main

import (
	"context"
	"errors"
)

// cmdService exists on Windows only; here the service manager of the
// platform runs `infergate run`.
func cmdService(_ context.Context, args []string, _ stdio) error {
	if _, _, err := parseService(args); err != nil {
		return err
	}
	return usageErr(errors.New("Windows only; on Linux install the .deb, whose systemd unit runs infergate (docs/install.md)"))
}
