package main

import (
	"encoding/base64"
	"net"
)

func encodeBase64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func splitHostPort(s string) (string, string, error) { return net.SplitHostPort(s) }

func joinHostPort(h, p string) string { return net.JoinHostPort(h, p) }
